import { sql } from "drizzle-orm";
import type { Services } from "./context.ts";

/** Readiness probes give up after a few seconds (kustomize: 3 s); the answer must come well before. */
const DB_TIMEOUT_MS = 1500;

/** Readiness: the database must answer; the broker's state is reported but an outage only degrades notices. */
export async function checkHealth(services: Pick<Services, "database" | "notifier" | "embeddedBroker" | "logDatabaseOutage">) {
  const mqtt = services.notifier.state();
  // Only when the server was to run its own broker: says whether it does, or why not.
  const broker = services.embeddedBroker ? { embedded_mqtt: services.embeddedBroker.status } : {};
  try {
    await Promise.race([
      services.database.db.execute(sql`select 1`),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), DB_TIMEOUT_MS).unref()),
    ]);
    return { healthy: true as const, body: { status: "healthy", database: "connected", mqtt, ...broker } };
  } catch (error) {
    services.logDatabaseOutage(error);
    return {
      healthy: false as const,
      body: { status: "unhealthy", database: "disconnected", mqtt, ...broker, error: "The database is not answering." },
    };
  }
}
