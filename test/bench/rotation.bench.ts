/**
 * Rotation figures: server-side time per rotation (notice → provisioning → acknowledgement) with instant simulated
 * devices, for 200 devices with the built-in provider and 20 with Keycloak; rotation-job wall time when nothing is
 * due (the built dist/cli.js: `npm run bench` builds it first); and status, dashboard and queueing with a fleet
 * of 10,000.
 */
import { spawnSync } from "node:child_process";
import { pathToFileURL } from "node:url";
import { devices } from "../../db/schema.ts";
import { createFleet } from "../support/fleet.ts";
import { requireKeycloak } from "../support/keycloak.ts";
import { bareEnv, PROJECT_ROOT } from "../support/process.ts";
import { keycloakEnv, startTestServer, type TestServer } from "../support/server.ts";
import { createSimulatedDevice } from "../support/simulated-device.ts";
import { waitFor } from "../support/wait.ts";
import { median, percentile, type BenchResult } from "./report.ts";

async function rotateFleet(server: TestServer, size: number) {
  const fleet = await createFleet(server, size, `bench${size}`);
  const sims = fleet.map((device) =>
    createSimulatedDevice({ baseUrl: server.url, tokenUrl: server.services.identity.tokenUrl, clientId: device.clientId, secret: device.secret }),
  );
  await Promise.all(sims.map((sim) => sim.ready));
  const started = performance.now();
  await server.admin("POST", "/api/rotation/trigger");
  await waitFor(`${size} rotations`, async () => sims.every((sim) => sim.rotations === 1), 15 * 60_000, 100);
  const wallSeconds = (performance.now() - started) / 1000;
  await Promise.all(sims.map((sim) => sim.stop()));
  const histogram = (await server.services.metrics.rotationDuration.get()).values;
  const sum = histogram.find((value) => value.metricName?.endsWith("_sum"))?.value ?? Number.NaN;
  const count = histogram.find((value) => value.metricName?.endsWith("_count"))?.value ?? Number.NaN;
  return { wallSeconds, perRotationMs: (sum / count) * 1000 };
}

async function timeRequests(server: TestServer, method: string, path: string, times: number) {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = performance.now();
    const response = await server.admin(method, path);
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
    samples.push(performance.now() - started);
  }
  return samples;
}

async function fleetOf10k(server: TestServer) {
  const [model] = await (await server.admin("GET", "/api/device-models")).json().then((body) => body.device_models);
  const rows = Array.from({ length: 10_000 }, (_, i) => {
    const key = `k${i.toString(36).padStart(7, "0")}`;
    return { key, clientId: `iotdevice-${model.code}-${key}`, deviceModelId: model.id, config: "{}", secretCreatedAt: new Date(), lastRotationCompletedAt: new Date(Date.now() - (i % 30) * 86_400_000) };
  });
  for (let i = 0; i < rows.length; i += 1000) await server.services.database.db.insert(devices).values(rows.slice(i, i + 1000));
  const status = await timeRequests(server, "GET", "/api/rotation/status", 30);
  const dashboard = await timeRequests(server, "GET", "/api/rotation/dashboard", 30);
  const trigger: number[] = [];
  for (let i = 0; i < 5; i++) {
    await server.services.database.db.update(devices).set({ rotationState: "OK" });
    trigger.push(...(await timeRequests(server, "POST", "/api/rotation/trigger", 1)));
  }
  return { status, dashboard, trigger };
}

export async function run(): Promise<BenchResult> {
  const figures: BenchResult["figures"] = {};

  const builtin = await startTestServer({ env: { ROTATION_TIMEOUT_SECONDS: "600" } });
  try {
    const result = await rotateFleet(builtin, 200);
    figures["built-in, 200 devices: wall time (s)"] = result.wallSeconds;
    figures["built-in: server time per rotation, mean (ms)"] = result.perRotationMs;

    const jobTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      const job = spawnSync(process.execPath, [`${PROJECT_ROOT}dist/cli.js`, "rotation-job"], { env: bareEnv({ ...builtin.env, MQTT_URL: "" }), encoding: "utf8" });
      if (job.status !== 0) throw new Error(`rotation-job failed: ${job.stderr}`);
      jobTimes.push(performance.now() - started);
    }
    figures["rotation-job wall time, nothing due, median of 5 (ms)"] = median(jobTimes);

    const scale = await fleetOf10k(builtin);
    figures["10,000 devices: GET /api/rotation/status median (ms)"] = median(scale.status);
    figures["10,000 devices: GET /api/rotation/status p95 (ms)"] = percentile(scale.status, 95);
    figures["10,000 devices: GET /api/rotation/dashboard median (ms)"] = median(scale.dashboard);
    figures["10,000 devices: GET /api/rotation/dashboard p95 (ms)"] = percentile(scale.dashboard, 95);
    figures["10,000 devices: POST /api/rotation/trigger median (ms)"] = median(scale.trigger);
  } finally {
    await builtin.close();
  }

  await requireKeycloak();
  const keycloak = await startTestServer({ env: { ...keycloakEnv(), ROTATION_TIMEOUT_SECONDS: "600" } });
  try {
    const result = await rotateFleet(keycloak, 20);
    figures["Keycloak, 20 devices: wall time (s)"] = result.wallSeconds;
    figures["Keycloak: server time per rotation, mean (ms)"] = result.perRotationMs;
  } finally {
    await keycloak.close();
  }
  return {
    title: "Credential rotation",
    figures,
    notes: [
      "Per-rotation time is the rotation-duration histogram's mean: from the device becoming PENDING to its acknowledgement, with simulated devices that answer at once over real MQTT.",
      "It includes up to one second of deliberate wait: the new secret is aligned to a whole second so tokens made with the old secret (whole-second iat) can never complete a rotation.",
    ],
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const result = await run();
  console.log(result.title);
  for (const [name, value] of Object.entries(result.figures)) console.log(`  ${name}: ${typeof value === "number" ? value.toFixed(1) : value}`);
  process.exit(0);
}
