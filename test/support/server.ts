import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../lib/config.ts";
import type { ServiceOverrides, Services } from "../../lib/context.ts";
import { startServer } from "../../server.ts";
import { ADMIN_TOKEN } from "./app.ts";
import { createTestDatabase } from "./database.ts";
import { keycloakTestSettings } from "./keycloak.ts";

export const MQTT_TEST_URL = process.env.MQTT_TEST_URL ?? "mqtt://127.0.0.1:1883";

/** Settings that put the backend in Keycloak mode against the test realm. */
export function keycloakEnv(): Record<string, string> {
  const kc = keycloakTestSettings();
  return {
    KEYCLOAK_BASE_URL: kc.baseUrl,
    KEYCLOAK_REALM: kc.realm,
    KEYCLOAK_ADMIN_CLIENT_ID: kc.adminClientId,
    KEYCLOAK_ADMIN_CLIENT_SECRET: kc.adminClientSecret,
    OIDC_AUDIENCE: kc.audience,
  };
}

export type TestServer = {
  url: string;
  services: Services;
  databaseUrl: string;
  env: Record<string, string>;
  admin(method: string, path: string, body?: unknown): Promise<Response>;
  /** Stops the server (like a process exit) but keeps the database, so another instance can take over. */
  stop(): Promise<void>;
  close(): Promise<void>;
};

/** A real listening server (127.0.0.1, free port) on a fresh PostgreSQL database; several may share one database. */
export async function startTestServer(
  options: { env?: Record<string, string>; overrides?: ServiceOverrides; databaseUrl?: string; port?: number } = {},
): Promise<TestServer> {
  const database = options.databaseUrl ? null : await createTestDatabase();
  const databaseUrl = options.databaseUrl ?? database!.url;
  const dataDir = mkdtempSync(join(tmpdir(), "iot-server-"));
  const port = options.port ?? (await freePort());
  const env = { ...testServerEnv({ databaseUrl, dataDir, port }), ...options.env };
  const config = loadConfig(env);
  const started = await startServer(config, options.overrides);
  // Rotation starts no device until the broker connection is up; tests begin once it is.
  if (env.MQTT_URL === MQTT_TEST_URL) await started.services.notifier.waitUntilConnected(5_000);
  const url = `http://127.0.0.1:${port}`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await started.stop();
  };
  return {
    url,
    services: started.services,
    databaseUrl,
    env,
    admin: (method, path, body) =>
      fetch(url + path, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
    stop,
    async close() {
      await stop();
      await database?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The settings of a test server on 127.0.0.1:`port`: built-in identity, the test broker, provisioning configured. */
export function testServerEnv({ databaseUrl, dataDir, port }: { databaseUrl: string; dataDir: string; port: number }): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    DATA_DIR: dataDir,
    HOST: "127.0.0.1",
    PORT: String(port),
    BASEURL: `http://127.0.0.1:${port}`,
    LOG_LEVEL: "silent",
    ADMIN_API_TOKEN: ADMIN_TOKEN,
    MIGRATE_ON_START: "true",
    ROTATION_SCHEDULER: "external",
    RETENTION_SCHEDULER: "external",
    // The machine's Mosquitto is shared: a test that wants the log subscriber turns it on with a client id of its own.
    DEVICE_LOG_MQTT: "false",
    SECRET_ENCRYPTION_KEY: "0r_4gxMTSPC4f4j2qq0DtEXzZA7IzBdDGYmRn7qd1uw=",
    WIFI_SSID: "homelab",
    WIFI_PASSWORD: "wifi-password",
    MQTT_URL: MQTT_TEST_URL,
    // A test without MQTT_URL must not start a broker on 1883, where the machine's Mosquitto listens.
    EMBEDDED_MQTT: "false",
  };
}

/** The built-in issuer and token URL derive from BASEURL, so the port must be known before the server starts. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}
