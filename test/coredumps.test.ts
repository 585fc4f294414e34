/**
 * Core dumps (issue 15) on a real server and PostgreSQL: the deployed firmware's upload (POST api/iot/coredump with
 * chip and firmware_version, octet-stream, its token), the admin's list, download and delete, the limits, crash counts
 * in the metrics and per model, and the service against the contract its fake also passes.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { openPostgres } from "../db/client.ts";
import { deviceModels, devices } from "../db/schema.ts";
import { createCoreDumpService } from "../lib/coredumps/service.ts";
import { describeCoreDumpContract } from "./support/coredump-contract.ts";
import { createTestDatabase } from "./support/database.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { buildImage } from "./support/firmware-image.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { ADMIN_TOKEN } from "./support/tokens.ts";

describeCoreDumpContract("postgres", async () => {
  const database = await createTestDatabase();
  const handle = openPostgres(database.url);
  await handle.migrate();
  let n = 0;
  return {
    service: createCoreDumpService(handle.db, { maxPerDevice: 3, retentionDays: 30 }),
    async addDevice() {
      n++;
      const [model] = await handle.db.insert(deviceModels).values({ code: `m${n}`, name: "M" }).returning();
      const key = `dev${String(n).padStart(5, "0")}`;
      const [device] = await handle.db.insert(devices).values({ key, deviceModelId: model!.id, config: "{}", clientId: `iotdevice-m${n}-${key}` }).returning();
      return { deviceId: device!.id, modelId: model!.id };
    },
    async close() {
      await handle.close();
      await database.drop();
    },
  };
});

describe("core dumps over HTTP", () => {
  let server: TestServer;
  let model: { id: number; code: string };
  let device: { id: number; key: string; client_id: string };
  let token: string;

  before(async () => {
    server = await startTestServer({ env: { COREDUMP_MAX_BYTES: "65536", COREDUMP_MAX_PER_DEVICE: "3" } });
    model = (await (await server.admin("POST", "/api/device-models", { code: `crashy${randomBytes(2).toString("hex")}`, name: "Crashy" })).json()) as typeof model;
    device = (await (await server.admin("POST", "/api/devices", { device_model_id: model.id, config: "{}" })).json()) as typeof device;
    token = (await server.services.builtinIssuer!.issueToken(device.client_id, 1)).access_token;
  });
  after(() => server?.close());

  /** Exactly what the deployed firmware sends after a crash. */
  const upload = (bytes: Uint8Array, query = "chip=esp32s3&firmware_version=v1.2.3", headers: Record<string, string> = { "content-type": "application/octet-stream" }) =>
    fetch(`${server.url}/api/iot/coredump?${query}`, { method: "POST", headers: { authorization: `Bearer ${token}`, ...headers }, body: bytes as BodyInit });

  test("the firmware's upload is stored as sent, listed, downloaded byte for byte and deleted", async () => {
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), randomBytes(40_000)]);
    const response = await upload(elf);
    assert.equal(response.status, 201, await response.clone().text());
    const stored = (await response.json()) as { id: number; chip: string; firmware_version: string; size: number };
    assert.deepEqual({ chip: stored.chip, firmware_version: stored.firmware_version, size: stored.size }, { chip: "esp32s3", firmware_version: "v1.2.3", size: elf.length });

    const list = (await (await server.admin("GET", `/api/devices/${device.id}/coredumps`)).json()) as { coredumps: { id: number }[]; count: number };
    assert.equal(list.count, 1);
    assert.equal(list.coredumps[0]!.id, stored.id);

    const download = await server.admin("GET", `/api/devices/${device.id}/coredumps/${stored.id}`);
    assert.equal(download.status, 200);
    assert.equal(download.headers.get("content-type"), "application/octet-stream");
    assert.equal(download.headers.get("content-disposition"), `attachment; filename="coredump-${device.key}-${stored.id}.elf"`);
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), elf);

    assert.equal((await server.admin("DELETE", `/api/devices/${device.id}/coredumps/${stored.id}`)).status, 204);
    await assertErrorEnvelope(await server.admin("GET", `/api/devices/${device.id}/coredumps/${stored.id}`), 404, "deleted");
    await assertErrorEnvelope(await server.admin("GET", `/api/devices/999999/coredumps`), 404, "unknown device");
  });

  test("limits: 413 beyond COREDUMP_MAX_BYTES, 415 for another type, 400 when empty, 401 without a token; only the newest three kept", async () => {
    await assertErrorEnvelope(await upload(randomBytes(65_537)), 413, "too large");
    await assertErrorEnvelope(await upload(randomBytes(10), undefined, { "content-type": "application/json" }), 415, "type");
    await assertErrorEnvelope(await upload(new Uint8Array(0)), 400, "empty");
    await assertErrorEnvelope(await upload(randomBytes(10), "chip=%00"), 400, "control character in chip");
    const anonymous = await fetch(`${server.url}/iot/coredump`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: "x" });
    await assertErrorEnvelope(anonymous, 401, "no token");
    for (let i = 0; i < 5; i++) assert.equal((await upload(Buffer.from(`dump ${i}`))).status, 201);
    const list = (await (await server.admin("GET", `/api/devices/${device.id}/coredumps`)).json()) as { count: number };
    assert.equal(list.count, 3);
  });

  test("crashes are counted per model and firmware version: in the metrics (unknown versions as \"unknown\") and per model", async () => {
    const image = buildImage({ version: "v2.0.0", size: 4096 });
    const uploaded = await fetch(`${server.url}/api/device-models/${model.id}/firmware`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
      body: image as BodyInit,
    });
    assert.equal(uploaded.status, 200, await uploaded.clone().text());
    assert.equal((await upload(Buffer.from("crash"), "chip=esp32&firmware_version=v2.0.0")).status, 201);
    assert.equal((await upload(Buffer.from("crash"), "chip=esp32&firmware_version=made-up")).status, 201);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, new RegExp(`iot_device_crashes_total\\{model="${model.code}",firmware_version="v2.0.0"\\} 1`));
    assert.match(metrics, new RegExp(`iot_device_crashes_total\\{model="${model.code}",firmware_version="unknown"\\} [1-9]`));
    assert.doesNotMatch(metrics, /firmware_version="made-up"/);
    const counts = (await (await server.admin("GET", `/api/device-models/${model.id}/crashes?days=1`)).json()) as { versions: { firmware_version: string; crashes: number }[] };
    assert.ok(counts.versions.some((v) => v.firmware_version === "v2.0.0" && v.crashes === 1));
    await assertErrorEnvelope(await server.admin("GET", `/api/device-models/${model.id}/crashes?days=0`), 400, "bad days");
  });
});
