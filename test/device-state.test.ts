/**
 * Device reported state (issue 13 §2) on the real server (node:http, PostgreSQL): last_seen_at written coalesced,
 * full downloads recorded only when every byte went out, report headers and POST /iot/state, how the running firmware
 * is known, the fleet view, and the web UI's device fields as they were.
 *
 * A listening server rather than createTestApp: whether a download was complete is told by the connection
 * (lib/http/file-response.ts), so only a real socket can show a client that hangs up after the image header.
 */
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { devices } from "../db/schema.ts";
import { createSeenBuffer } from "../lib/device-state/seen.ts";
import { createLogger } from "../lib/logger.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { buildImage } from "./support/firmware-image.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { ADMIN_TOKEN } from "./support/tokens.ts";
import { waitFor } from "./support/wait.ts";

const MiB = 1024 * 1024;
type Device = { id: number; key: string; client_id: string };
const ELF = "ab".repeat(32);

describe("device reported state", () => {
  let server: TestServer;
  const tokens = new Map<number, string>();

  const db = () => server.services.database.db;
  const row = async (device: Device) => (await db().select().from(devices).where(eq(devices.id, device.id)))[0]!;
  const counter = async (metric: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> }, labels: Record<string, string> = {}) =>
    (await metric.get()).values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0);
  const writes = () => counter(server.services.metrics.deviceStateWrites);
  const flush = () => server.services.deviceState.flush();

  const model = async (code: string) => (await (await server.admin("POST", "/api/device-models", { code, name: code })).json()).id as number;
  const device = async (modelId: number): Promise<Device> => {
    const created = (await (await server.admin("POST", "/api/devices", { device_model_id: modelId, config: "{}" })).json()) as Device;
    tokens.set(created.id, (await server.services.builtinIssuer!.issueToken(created.client_id, 1)).access_token);
    return created;
  };
  const upload = async (modelId: number, image: Uint8Array) => {
    const response = await fetch(`${server.url}/api/device-models/${modelId}/firmware`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
      body: image as BodyInit,
    });
    assert.equal(response.status, 200, await response.clone().text());
    return (await response.json()) as { version_id: number; firmware_version: string };
  };
  const iot = (d: Device, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
    fetch(server.url + path, {
      method: init.method ?? "GET",
      body: init.body,
      headers: { authorization: `Bearer ${tokens.get(d.id)}`, ...(init.body !== undefined && { "content-type": "application/json" }), ...init.headers },
    });
  const poll = async (d: Device, headers: Record<string, string> = {}) => {
    const response = await iot(d, "/iot/firmware-version", { headers });
    assert.equal(response.status, 200, await response.clone().text());
    return response.json();
  };
  const admin = async (path: string) => {
    const response = await server.admin("GET", path);
    assert.equal(response.status, 200, await response.clone().text());
    return response.json();
  };
  /**
   * Gives a download's 'finish' time to arrive and writes what is waiting, so that an absent record means something.
   * Downloads are recorded by the coalesced flush (lib/device-state/seen.ts) like sightings.
   */
  const settle = async () => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    await flush();
  };
  /** A download is recorded with the flush after its last byte went out (node:http's 'finish', just after the client has it). */
  const recorded = (d: Device) =>
    waitFor("the download is recorded", async () => {
      await flush();
      const r = await row(d);
      return r.downloadedAt !== null && r;
    });

  before(async () => {
    // The tests count row writes: only their own flushes write, so a busy machine cannot split what one flush takes.
    server = await startTestServer({ overrides: { deviceStateFlushEveryMs: 3_600_000 } });
  });
  after(() => server.close());

  test("200 calls from 20 devices cost at most 20 row writes, and last_seen_at appears after a flush", async () => {
    const modelId = await model("seen");
    const fleet = await Promise.all(Array.from({ length: 20 }, () => device(modelId)));
    await flush();
    const before = await writes();
    for (let round = 0; round < 10; round++) await Promise.all(fleet.map((d) => poll(d)));
    await flush();
    const written = (await writes()) - before;
    assert.ok(written <= 20, `${written} writes for 200 calls of 20 devices`);
    for (const d of fleet) assert.ok((await row(d)).lastSeenAt, `device ${d.id} has last_seen_at after a flush`);
    // More calls within the minute write nothing.
    for (let round = 0; round < 5; round++) await Promise.all(fleet.map((d) => poll(d)));
    await flush();
    assert.equal((await writes()) - before, written, "calls within a minute of the last write add none");
    const listed = (await admin(`/api/devices?model_id=${modelId}`)).devices as { last_seen_at: string | null }[];
    assert.ok(listed.every((d) => d.last_seen_at !== null), "the admin list shows last_seen_at");
  });

  describe("downloads", () => {
    let modelId: number;
    let versionId: number;
    let etag: string;
    let size: number;

    before(async () => {
      modelId = await model("downloads");
      // Bigger than what the kernel buffers on a loopback connection, so that a client hanging up early leaves bytes unsent.
      const image = buildImage({ version: "big-1", size: 12 * MiB });
      size = image.length;
      versionId = (await upload(modelId, image)).version_id;
    });

    test("a full 200 records the downloaded version", async () => {
      const d = await device(modelId);
      const response = await iot(d, "/iot/firmware");
      assert.equal(response.status, 200);
      etag = response.headers.get("etag")!;
      assert.equal((await response.arrayBuffer()).byteLength, size);
      const r = await recorded(d);
      assert.equal(r.downloadedVersionId, versionId);
      assert.ok(r.downloadedAt);
    });

    test("many full downloads of one device and its next request are one row write, and it counts as restarted", async () => {
      const d = await device(modelId);
      await poll(d);
      await flush();
      const before = await writes();
      for (let i = 0; i < 3; i++) {
        const response = await iot(d, "/iot/firmware");
        assert.equal(response.status, 200);
        await response.arrayBuffer();
      }
      await new Promise((resolve) => setTimeout(resolve, 300)); // the last 'finish'
      await poll(d); // after the last byte went out: the restarted device
      await flush();
      assert.equal((await writes()) - before, 1, "three downloads and a sighting within one flush interval: one row write");
      const r = await row(d);
      assert.equal(r.downloadedVersionId, versionId);
      assert.ok(r.downloadedAt && r.lastSeenAt && r.lastSeenAt > r.downloadedAt, "the request after the download is written with it");
      assert.equal((await admin(`/api/devices/${d.id}`)).running_firmware_source, "inferred");
    });

    test("a Range (206), a 304 and a HEAD record nothing", async () => {
      const d = await device(modelId);
      const ranged = await iot(d, "/iot/firmware", { headers: { range: "bytes=0-1023" } });
      assert.equal(ranged.status, 206);
      assert.equal((await ranged.arrayBuffer()).byteLength, 1024);
      const wholeRange = await iot(d, "/iot/firmware", { headers: { range: `bytes=0-${size - 1}` } });
      assert.equal(wholeRange.status, 206);
      await wholeRange.arrayBuffer();
      const unchanged = await iot(d, "/iot/firmware", { headers: { "if-none-match": etag } });
      assert.equal(unchanged.status, 304);
      const head = await iot(d, "/iot/firmware", { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), String(size));
      await settle();
      const r = await row(d);
      assert.equal(r.downloadedVersionId, null);
      assert.equal(r.downloadedAt, null);
    });

    test("a download the client cancels after the image header (as the deployed firmware does on a matching version) records nothing", async () => {
      const d = await device(modelId);
      const received = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${server.url}/iot/firmware`, { headers: { authorization: `Bearer ${tokens.get(d.id)}` } }, (res) => {
          assert.equal(res.statusCode, 200);
          res.once("data", (chunk: Buffer) => {
            // The app descriptor is in the first 288 bytes: read, compared, the body cancelled.
            req.destroy();
            resolve(chunk.length);
          });
          res.on("error", () => {});
        });
        req.on("error", (error) => (req.destroyed ? undefined : reject(error)));
        req.end();
      });
      assert.ok(received < size);
      await settle();
      await settle();
      const r = await row(d);
      assert.equal(r.downloadedVersionId, null, "an aborted download is not a download");
      assert.equal(r.downloadedAt, null);
    });
  });

  describe("reports", () => {
    let modelId: number;
    let target: Record<string, unknown>;

    before(async () => {
      modelId = await model("reports");
      await upload(modelId, buildImage({ version: "rep-1", size: 64 * 1024, elfSha256: ELF }));
      const d = await device(modelId);
      target = await poll(d);
      assert.equal(target.firmware_version, "rep-1");
    });

    test("valid report headers are stored", async () => {
      const d = await device(modelId);
      await poll(d, { "x-firmware-version": "rep-1", "x-firmware-elf-sha256": ELF.toUpperCase(), "x-ota-state": "pending_verify" });
      await flush();
      const r = await row(d);
      assert.equal(r.reportedFirmwareVersion, "rep-1");
      assert.equal(r.reportedElfSha256, ELF, "stored as lowercase hex");
      assert.equal(r.otaState, "pending_verify");
      assert.ok(r.reportedAt);
      // A changed report is written at once (within the same minute).
      await poll(d, { "x-ota-state": "valid" });
      await flush();
      assert.equal((await row(d)).otaState, "valid");
      assert.equal((await row(d)).reportedFirmwareVersion, "rep-1", "headers left out keep what was reported");
    });

    test("two replicas flushing out of order: an older sighting does not replace the newer report", async () => {
      const d = await device(modelId);
      const stored = await row(d);
      const replica = () => createSeenBuffer({ db: db(), logger: createLogger("silent"), counters: { written: () => {}, dropped: () => {} }, flushEveryMs: 3_600_000 });
      const [first, second] = [replica(), replica()];
      const before = new Date(Date.now() - 30_000);
      const after = new Date(Date.now() - 10_000);
      // The device ran rep-0 on one replica, then (after an update) reported rep-1 on the other, which wrote first.
      first.note(stored, before, { firmware_version: "rep-0", ota_state: "valid" });
      second.note(stored, after, { firmware_version: "rep-1", ota_state: "pending_verify" });
      await second.flush();
      await first.flush();
      const r = await row(d);
      assert.equal(r.reportedFirmwareVersion, "rep-1");
      assert.equal(r.otaState, "pending_verify");
      assert.equal(r.reportedAt?.getTime(), after.getTime());
      assert.equal(r.lastSeenAt?.getTime(), after.getTime());
      await Promise.all([first.close(), second.close()]);
    });

    test("a report waiting on one replica stays as old as it is when the device polls there again without headers", async () => {
      const d = await device(modelId);
      const stored = await row(d);
      const replica = () => createSeenBuffer({ db: db(), logger: createLogger("silent"), counters: { written: () => {}, dropped: () => {} }, flushEveryMs: 3_600_000 });
      const [first, second] = [replica(), replica()];
      const [before, after, later] = [30_000, 20_000, 10_000].map((ms) => new Date(Date.now() - ms));
      // Before its update the device told the first replica it ran rep-0; after it, the second that it runs rep-1; then
      // it polled the first again, saying nothing (the firmware sends no report headers on its version poll).
      first.note(stored, before!, { firmware_version: "rep-0", ota_state: "valid" });
      second.note(stored, after!, { firmware_version: "rep-1", ota_state: "pending_verify" });
      await second.flush();
      first.note(stored, later!, {});
      await first.flush();
      const r = await row(d);
      assert.equal(r.reportedFirmwareVersion, "rep-1");
      assert.equal(r.otaState, "pending_verify");
      assert.equal(r.reportedAt?.getTime(), after!.getTime());
      assert.equal(r.lastSeenAt?.getTime(), later!.getTime(), "the poll is still a sighting");
      await Promise.all([first.close(), second.close()]);
    });

    test("malformed report headers are ignored and counted; the request still answers 200", async () => {
      const d = await device(modelId);
      const ignored = server.services.metrics.deviceReportHeadersIgnored;
      const before = {
        version: await counter(ignored, { header: "x-firmware-version" }),
        elf: await counter(ignored, { header: "x-firmware-elf-sha256" }),
        ota: await counter(ignored, { header: "x-ota-state" }),
      };
      const answer = await poll(d, { "x-firmware-version": "x".repeat(40), "x-firmware-elf-sha256": "not-hex", "x-ota-state": "bogus" });
      assert.deepEqual(answer, target);
      await flush();
      const r = await row(d);
      assert.equal(r.reportedFirmwareVersion, null);
      assert.equal(r.reportedElfSha256, null);
      assert.equal(r.otaState, null);
      assert.ok(r.lastSeenAt, "the request itself is still a sighting");
      assert.equal(await counter(ignored, { header: "x-firmware-version" }), before.version + 1);
      assert.equal(await counter(ignored, { header: "x-firmware-elf-sha256" }), before.elf + 1);
      assert.equal(await counter(ignored, { header: "x-ota-state" }), before.ota + 1);
      // One good header next to a bad one is still taken.
      await poll(d, { "x-firmware-version": "rep-1", "x-ota-state": "VALID!" });
      await flush();
      assert.equal((await row(d)).reportedFirmwareVersion, "rep-1");
      assert.equal((await row(d)).otaState, null);
    });

    test("POST /iot/state stores a valid report, ignores unknown fields and answers with the target", async () => {
      const d = await device(modelId);
      const report = {
        firmware_version: "rep-0",
        elf_sha256: ELF,
        ota_state: "rolled_back",
        last_invalid_version: "rep-1",
        reset_reason: "ESP_RST_PANIC",
        uptime_s: 12,
        free_heap: 150_000,
        rssi: -67,
        from_the_future: { anything: true },
      };
      const response = await iot(d, "/iot/state", { method: "POST", body: JSON.stringify(report) });
      assert.equal(response.status, 200, await response.clone().text());
      assert.deepEqual(await response.json(), target);
      const r = await row(d);
      assert.equal(r.reportedFirmwareVersion, "rep-0");
      assert.equal(r.reportedElfSha256, ELF);
      assert.equal(r.otaState, "rolled_back");
      const { from_the_future: _, ...stored } = report;
      assert.deepEqual(r.lastStateReport, stored, "unknown fields are not stored");
      assert.ok(r.reportedAt && r.lastSeenAt);
      // Also under /api (as every device route).
      const again = await iot(d, "/api/iot/state", { method: "POST", body: JSON.stringify({ ota_state: "valid" }) });
      assert.equal(again.status, 200);
      const after = await row(d);
      assert.equal(after.otaState, "valid");
      assert.equal(after.reportedFirmwareVersion, "rep-0", "fields left out keep what was reported");
    });

    test("POST /iot/state with an invalid report: 400 in the envelope and nothing stored", async () => {
      const d = await device(modelId);
      const bad: [string, string][] = [
        ["unknown ota_state", JSON.stringify({ ota_state: "bogus" })],
        ["version too long", JSON.stringify({ firmware_version: "v".repeat(32) })],
        ["version not printable", JSON.stringify({ firmware_version: "v1\n" })],
        ["elf not hex", JSON.stringify({ elf_sha256: "z".repeat(64) })],
        ["elf too short", JSON.stringify({ elf_sha256: "ab" })],
        ["negative uptime", JSON.stringify({ uptime_s: -1 })],
        ["fractional heap", JSON.stringify({ free_heap: 1.5 })],
        ["rssi out of range", JSON.stringify({ rssi: 200 })],
        ["string rssi", JSON.stringify({ rssi: "-60" })],
        ["reset reason with spaces", JSON.stringify({ reset_reason: "power on" })],
        ["a valid field next to a bad one", JSON.stringify({ firmware_version: "rep-1", uptime_s: "long" })],
        ["an array", "[]"],
        ["null", "null"],
        ["not JSON", "{firmware_version: rep-1"],
      ];
      for (const [label, body] of bad) {
        const response = await iot(d, "/iot/state", { method: "POST", body });
        const envelope = await assertErrorEnvelope(response, 400, label);
        assert.match(envelope.code, /^(VALIDATION_FAILED|INVALID_JSON|[A-Z_]+)$/);
      }
      const r = await row(d);
      assert.equal(r.reportedFirmwareVersion, null);
      assert.equal(r.reportedElfSha256, null);
      assert.equal(r.otaState, null);
      assert.equal(r.lastStateReport, null);
      assert.equal(r.reportedAt, null);
    });

    test("POST /iot/state needs a device token", async () => {
      const response = await fetch(`${server.url}/iot/state`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      await assertErrorEnvelope(response, 401, "no token");
      const asAdmin = await fetch(`${server.url}/iot/state`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: "{}",
      });
      await assertErrorEnvelope(asAdmin, [401, 403], "admin token");
    });
  });

  describe("running firmware and the fleet", () => {
    let modelId: number;
    let reported: Device;
    let inferred: Device;
    let downloadedOnly: Device;
    let silent: Device;
    let never: Device;
    let old: Device;

    before(async () => {
      modelId = await model("fleet");
      await upload(modelId, buildImage({ version: "fleet-1", size: 32 * 1024 }));
      await upload(modelId, buildImage({ version: "fleet-2", size: 32 * 1024 }));
      [reported, inferred, downloadedOnly, silent, never, old] = await Promise.all(Array.from({ length: 6 }, () => device(modelId)));
    });

    const deviceView = async (d: Device) => admin(`/api/devices/${d.id}`);

    test("running_firmware_source: reported, inferred (a full download, then a later authenticated request), unknown", async () => {
      // reported: the device says it runs fleet-1 (its target is fleet-2).
      const state = await iot(reported, "/iot/state", { method: "POST", body: JSON.stringify({ firmware_version: "fleet-1", ota_state: "valid" }) });
      assert.equal(state.status, 200);
      assert.equal((await state.json()).firmware_version, "fleet-2", "the answer is the target");

      // inferred: a full download of fleet-2, then (after the "restart") another authenticated request.
      for (const d of [inferred, downloadedOnly]) {
        const response = await iot(d, "/iot/firmware");
        assert.equal(response.status, 200);
        await response.arrayBuffer();
        await recorded(d);
      }
      await flush();
      const beforeRestart = await deviceView(inferred);
      assert.equal(beforeRestart.running_firmware_source, "unknown", "a download alone proves nothing");
      assert.equal(beforeRestart.running_firmware_version, null);
      await new Promise((resolve) => setTimeout(resolve, 5)); // a later request, in the clock's eyes too
      await poll(inferred);
      await flush();

      // unknown: seen, never reported, never downloaded.
      await poll(silent);
      await flush();

      const views = Object.fromEntries(
        await Promise.all(
          Object.entries({ reported, inferred, downloadedOnly, silent, never }).map(async ([name, d]) => [name, await deviceView(d)] as const),
        ),
      );
      assert.deepEqual(
        Object.fromEntries(Object.entries(views).map(([name, v]) => [name, [v.running_firmware_source, v.running_firmware_version, v.target_firmware_version]])),
        {
          reported: ["reported", "fleet-1", "fleet-2"],
          inferred: ["inferred", "fleet-2", "fleet-2"],
          downloadedOnly: ["unknown", null, "fleet-2"],
          silent: ["unknown", null, "fleet-2"],
          never: ["unknown", null, "fleet-2"],
        },
      );
      assert.equal(views.never.last_seen_at, null);
      assert.ok(views.silent.last_seen_at);

      // A report wins over an inference.
      await poll(inferred, { "x-firmware-version": "fleet-1" });
      await flush();
      const overruled = await deviceView(inferred);
      assert.deepEqual([overruled.running_firmware_source, overruled.running_firmware_version], ["reported", "fleet-1"]);
      // …and the list says the same as the single view.
      const listed = ((await admin(`/api/devices?model_id=${modelId}`)).devices as { id: number; running_firmware_source: string }[]).find((x) => x.id === inferred.id)!;
      assert.equal(listed.running_firmware_source, "reported");
    });

    test("the fleet view counts running and target versions, stale and mismatched devices", async () => {
      // `old` was seen 30 hours ago and reported fleet-2.
      await db()
        .update(devices)
        .set({ lastSeenAt: new Date(Date.now() - 30 * 3_600_000), reportedFirmwareVersion: "fleet-2" })
        .where(eq(devices.id, old.id));
      const fleet = await admin(`/api/device-models/${modelId}/fleet`);
      // running: reported fleet-1, inferred → reported fleet-1, old fleet-2; unknown: downloadedOnly, silent, never.
      assert.deepEqual(fleet, {
        versions: [
          { version: null, running: 3, target: 0, crashes: 0 },
          { version: "fleet-1", running: 2, target: 0, crashes: 0 },
          { version: "fleet-2", running: 1, target: 6, crashes: 0 },
        ],
        stale: 2, // never seen, and seen 30 h ago
        mismatched: 2, // the two running fleet-1; unknown devices are not counted
      });
      assert.equal((await admin(`/api/device-models/${modelId}/fleet?stale_hours=48`)).stale, 1, "only the never-seen one");
      assert.equal((await admin(`/api/device-models/${modelId}/fleet?stale_hours=1`)).stale, 2);
    });

    test("fleet: stale_hours is validated; an unknown model is 404", async () => {
      for (const value of ["0", "-1", "1.5", "abc", "100000", "", "24h"]) {
        const response = await server.admin("GET", `/api/device-models/${modelId}/fleet?stale_hours=${encodeURIComponent(value)}`);
        await assertErrorEnvelope(response, 400, `stale_hours=${value}`);
      }
      await assertErrorEnvelope(await server.admin("GET", `/api/device-models/${modelId}/fleet?other=1`), 400, "unknown parameter");
      await assertErrorEnvelope(await server.admin("GET", `/api/device-models/999999/fleet`), 404, "unknown model");
      const asDevice = await iot(silent, `/api/device-models/${modelId}/fleet`);
      await assertErrorEnvelope(asDevice, [401, 403], "device token");
    });

    test("a model without firmware: every device's target is null and the poll answers null as before", async () => {
      const bare = await model("fleet_bare");
      const d = await device(bare);
      const answer = await poll(d);
      assert.equal(answer.firmware_version, null);
      assert.deepEqual(await admin(`/api/device-models/${bare}/fleet`), { versions: [{ version: null, running: 1, target: 1, crashes: 0 }], stale: 1, mismatched: 0 });
    });
  });

  test("the web UI's device fields are all still there with the same meaning", async () => {
    const modelId = await model("webui");
    await upload(modelId, buildImage({ version: "ui-1", size: 32 * 1024 }));
    const d = await device(modelId);
    await poll(d);
    await flush();
    const summaryFields = [
      "id",
      "key",
      "device_model_id",
      "device_name",
      "device_entity_id",
      "enable_ota",
      "rotation_state",
      "secret_created_at",
      "rotation_unconfirmed",
      "previous_secret_expires_at",
    ];
    const deviceFields = [
      ...summaryFields,
      "device_model",
      "config",
      "client_id",
      "last_rotation_attempt_at",
      "last_rotation_completed_at",
      "created_at",
      "updated_at",
    ];
    const r = await row(d);
    const iso = (date: Date | null) => date?.toISOString() ?? null;
    const expected = {
      id: r.id,
      key: r.key,
      device_model_id: modelId,
      device_name: r.deviceName,
      device_entity_id: r.deviceEntityId,
      enable_ota: r.enableOta,
      rotation_state: r.rotationState,
      secret_created_at: iso(r.secretCreatedAt),
      rotation_unconfirmed: r.rotationUnconfirmed,
      previous_secret_expires_at: iso(r.previousSecretExpiresAt),
    };
    const listed = ((await admin(`/api/devices?model_id=${modelId}`)).devices as Record<string, unknown>[])[0]!;
    for (const field of summaryFields) assert.ok(field in listed, `DeviceSummary.${field}`);
    assert.deepEqual(Object.fromEntries(summaryFields.map((f) => [f, listed[f]])), expected);
    const single = await admin(`/api/devices/${d.id}`);
    for (const field of deviceFields) assert.ok(field in single, `Device.${field}`);
    assert.deepEqual(Object.fromEntries(summaryFields.map((f) => [f, single[f]])), expected);
    assert.deepEqual(single.device_model, { id: modelId, code: "webui", name: "webui", firmware_version: "ui-1" }, "device_model.firmware_version is still the model's stable version");
    assert.equal(single.client_id, d.client_id);
    assert.equal(single.config, "{}");
    assert.equal(single.created_at, r.createdAt.toISOString());
    // The added fields, nothing else.
    assert.deepEqual(
      Object.keys(single).filter((k) => !deviceFields.includes(k)).sort(),
      ["firmware_pin_version_id", "last_seen_at", "running_firmware_source", "running_firmware_version", "target_firmware_version"],
    );
    // Sightings do not count as edits: updated_at stays what the admin's last change made it.
    assert.equal(single.updated_at, r.updatedAt.toISOString());
    const pollAnswer = await poll(d);
    assert.equal(pollAnswer.firmware_version, "ui-1", "GET /iot/firmware-version keeps firmware_version");
  });
});
