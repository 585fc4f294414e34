import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { createLocalJWKSet, jwtVerify } from "jose";
import { Request as PonyRequest } from "@whatwg-node/fetch";
import { routes } from "/work/main/functions/index.ts";
import { deviceModels, devices } from "/work/main/db/schema.ts";
import { loadConfig } from "/work/main/lib/config.ts";
import { createServices } from "/work/main/lib/context.ts";
import { createApp } from "/work/main/lib/http/app.ts";
import { generateFernetKey } from "/work/main/lib/secrets.ts";
import { createTestDatabase } from "/work/main/test/support/database.ts";

const database = await createTestDatabase();
const services = await createServices(loadConfig({ DATABASE_URL: database.url, DATA_DIR: mkdtempSync(join(tmpdir(), "m-")), SECRET_ENCRYPTION_KEY: generateFernetKey(), ADMIN_API_TOKEN: "x".repeat(20), BASEURL: "http://bench.local", LOG_LEVEL: "warn", MIGRATE_ON_START: "true" }));
const model = await services.models.create({ code: "bench", name: "Bench" });
const device = await services.devices.create({ device_model_id: model.id, config: '{"a":1}' });
const token = (await services.builtinIssuer!.issueToken(device.client_id)).access_token;
const app = createApp(routes, services);
const keys = createLocalJWKSet(await services.builtinIssuer!.jwks());
const db = services.database.db;
const N = Number(process.env.N ?? 3000);
async function bare() {
  const { payload } = await jwtVerify<{ azp?: string }>(token, keys, { issuer: "http://bench.local/oauth2", audience: "iot-backend", algorithms: ["RS256"], clockTolerance: 30, requiredClaims: ["exp", "iat"] });
  const m = /^iotdevice-([a-z0-9_]+)-([a-z0-9]{8})$/.exec(payload.azp!)!;
  const [found] = await db.select({ device: devices, modelCode: deviceModels.code }).from(devices).innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id)).where(eq(devices.key, m[2]!));
  return found!.device.config;
}
async function full() {
  const res = await app(new PonyRequest("http://bench.local/iot/config", { headers: { authorization: `Bearer ${token}` } }) as unknown as Request);
  return res.text();
}
async function verifyOnly() { await jwtVerify(token, keys, { issuer: "http://bench.local/oauth2", audience: "iot-backend", algorithms: ["RS256"] }); }
async function queryOnly() { await db.select({ device: devices, modelCode: deviceModels.code }).from(devices).innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id)).where(eq(devices.key, device.key)); }
for (const [name, fn] of (process.env.ONLY === "full" ? [["full", full]] : [["verify", verifyOnly], ["query", queryOnly], ["bare", bare], ["full", full], ["bare", bare], ["full", full]]) as [string, () => Promise<unknown>][]) {
  for (let i = 0; i < 300; i++) await fn();
  const c0 = process.cpuUsage(); const t0 = performance.now();
  for (let i = 0; i < N; i++) await fn();
  const c = process.cpuUsage(c0);
  console.log(name, "wall µs", ((performance.now() - t0) * 1000 / N).toFixed(0), "cpu µs", ((c.user + c.system) / N).toFixed(0));
}
await services.close(); await database.drop(); process.exit(0);
