/**
 * The app the fuzzer walks: real PostgreSQL, browser login against the test Keycloak (so session cookies are read) or
 * the backend's own sign-in page,
 * two models and two devices with the ids 1 and 2, firmware on model 1, and the data saved to be put back.
 */
import assert from "node:assert/strict";
import { ADMIN_TOKEN, createTestApp, type TestApp } from "../app.ts";
import { snapshotData } from "../envelope.ts";
import { buildImage } from "../firmware-image.ts";
import { requireKeycloak } from "../keycloak.ts";
import { saveRestorePoint } from "../restore-point.ts";
import type { Tokens } from "./credentials.ts";
import { BASE } from "./request.ts";
import { SEEDED_IDS } from "./values.ts";

export type FuzzTarget = {
  app: TestApp;
  /** Requests sent so far (shrinking included). */
  sent: number;
  /** The admin token and a fresh token of device 1. */
  tokens(): Promise<Tokens>;
  /** Null while the data is as seeded; else what changed, after putting the seeded data back. */
  dataChange(): Promise<string | null>;
  /** Errors nobody caught since the last call: each would have ended a real server process. */
  takeCrashes(): unknown[];
  close(): Promise<void>;
};

const CONFIG_SCHEMA = JSON.stringify({ type: "object", properties: { deviceName: { type: "string" } }, required: ["deviceName"] });

/** `oidc`: browser login against the test Keycloak; without it the backend serves its own sign-in page. */
export async function openFuzzTarget(options: { oidc: boolean } = { oidc: true }): Promise<FuzzTarget> {
  const keycloak = options.oidc ? await requireKeycloak() : null;
  const app = await createTestApp({
    env: {
      ROTATION_SCHEDULER: "external",
      // The testing routes are operations of the document too, when they are served.
      TESTING_MODE: "true",
      ...(keycloak && {
        OIDC_ISSUER_URL: keycloak.issuer,
        OIDC_CLIENT_ID: keycloak.adminClientId,
        OIDC_CLIENT_SECRET: keycloak.adminClientSecret,
        OIDC_AUDIENCE: keycloak.audience,
      }),
      DEVICE_MQTT_URL: "mqtt://mqtt.iot.test:1883",
      WIFI_SSID: "FuzzLab",
      WIFI_PASSWORD: "fuzz password",
    },
  });
  const create = async (path: string, body: object) => {
    const response = await app.call("POST", path, { body });
    assert.equal(response.status, 201, `seeding ${path}: ${await response.clone().text()}`);
    return (await response.json()) as { id: number; client_id: string };
  };
  const models = [
    await create("/api/device-models", { code: "m1", name: "Model one" }),
    await create("/api/device-models", { code: "m2", name: "Model two", config_schema: CONFIG_SCHEMA }),
  ];
  const devices = [
    await create("/api/devices", { device_model_id: models[0]!.id, config: "{}" }),
    await create("/api/devices", { device_model_id: models[1]!.id, config: '{"deviceName": "two"}' }),
  ];
  assert.deepEqual([models.map((m) => m.id), devices.map((d) => d.id)], [SEEDED_IDS, SEEDED_IDS], "seeded ids");
  const firmware = await app.fetch(
    new Request(`${BASE}/api/device-models/1/firmware`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
      body: buildImage({ version: "1.0.0", size: 4096 }),
    }),
  );
  assert.equal(firmware.status, 200, `seeding firmware: ${await firmware.text()}`);

  const seeded = await snapshotData(app);
  const restore = await saveRestorePoint(app);
  // Caught here, an uncaught error fails the request that caused it; else node:test would blame the test without the request.
  let crashes: unknown[] = [];
  process.setUncaughtExceptionCaptureCallback((error) => crashes.push(error));
  return {
    app,
    sent: 0,
    async tokens() {
      return { admin: ADMIN_TOKEN, device: (await app.services.builtinIssuer!.issueToken(devices[0]!.client_id, 1)).access_token };
    },
    async dataChange() {
      const now = await snapshotData(app);
      const changed = Object.keys({ ...seeded, ...now }).filter((table) => seeded[table] !== now[table]);
      if (changed.length === 0) return null;
      await restore();
      assert.deepEqual(await snapshotData(app), seeded, "the restore point puts the seeded data back");
      return changed.map((table) => `${table} (${seeded[table]?.split(",")[0]} → ${now[table]?.split(",")[0]})`).join(", ");
    },
    takeCrashes() {
      const taken = crashes;
      crashes = [];
      return taken;
    },
    async close() {
      process.setUncaughtExceptionCaptureCallback(null);
      await app.close();
    },
  };
}
