import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { routesFor } from "../../functions/index.ts";
import { loadConfig } from "../../lib/config.ts";
import { createServices, type ServiceOverrides, type Services } from "../../lib/context.ts";
import { createApp } from "../../lib/http/app.ts";
import type { Connection } from "../../lib/http/client-address.ts";
import type { Route } from "../../lib/http/route.ts";
import { createTestDatabase } from "./database.ts";
import { ADMIN_TOKEN } from "./tokens.ts";

export { ADMIN_TOKEN };

export type TestApp = {
  services: Services;
  /** The routes this configuration enables (functions/index.ts routesFor). */
  routes: Route[];
  dataDir: string;
  /** The app as server.ts calls it; without a connection the client's address is unknown (no per-address limits). */
  fetch(request: Request, connection?: Connection): Promise<Response>;
  /** A request with the admin token; a plain object body is sent as JSON. */
  call(method: string, path: string, options?: { body?: unknown; token?: string | null; headers?: Record<string, string> }): Promise<Response>;
  close(): Promise<void>;
};

/** The whole app on a fresh PostgreSQL database, called through the router with plain Request objects. */
export async function createTestApp(
  options: { env?: Record<string, string>; overrides?: ServiceOverrides } = {},
): Promise<TestApp> {
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), "iot-test-"));
  const config = loadConfig({
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    LOG_LEVEL: "silent",
    ADMIN_API_TOKEN: ADMIN_TOKEN,
    BASEURL: "http://iot.test",
    // No broker of its own: the machine's Mosquitto may hold 1883, and parallel tests must not race for it.
    EMBEDDED_MQTT: "false",
    ...options.env,
  });
  const services = await createServices(config, options.overrides);
  await services.database.migrate();
  const routes = routesFor(services);
  const fetch = createApp(routes, services);
  return {
    services,
    routes,
    dataDir,
    fetch,
    call(method, path, { body, token = ADMIN_TOKEN, headers = {} } = {}) {
      const init: RequestInit = { method, headers: { ...headers } };
      const h = init.headers as Record<string, string>;
      if (token) h.authorization = `Bearer ${token}`;
      if (body !== undefined) {
        init.body = typeof body === "string" ? body : JSON.stringify(body);
        h["content-type"] ??= "application/json";
      }
      return fetch(new Request(`http://iot.test${path}`, init));
    },
    async close() {
      await services.close();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
