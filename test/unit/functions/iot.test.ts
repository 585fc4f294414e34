/** Unit tests of functions/iot/** (one describe per route file; the /api/iot copies run the same route values). */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import upload from "../../../functions/api/device-models/[id]/firmware.post.ts";
import config from "../../../functions/iot/config.get.ts";
import firmwareVersion from "../../../functions/iot/firmware-version.get.ts";
import firmware from "../../../functions/iot/firmware.get.ts";
import provisioning from "../../../functions/iot/provisioning.get.ts";
import state from "../../../functions/iot/state.post.ts";
import logs from "../../../functions/iot/logs.post.ts";
import coredump from "../../../functions/iot/coredump.post.ts";
import { runRoute } from "../../../lib/http/app.ts";
import { deviceToken } from "../../support/fakes/auth.ts";
import { buildImage } from "../../support/firmware-image.ts";
import { asAdmin, expectDeviceOnly, expectError, request, unitApp, type UnitApp } from "../harness.ts";

async function uploadFirmware(app: UnitApp, modelId: number, bytes: Uint8Array<ArrayBuffer>) {
  const response = await app.run(upload, asAdmin("POST", `/api/device-models/${modelId}/firmware?rollout=immediate`, { body: new Blob([bytes]) }));
  assert.equal(response.status, 200);
}

describe("functions/iot/config.get.ts", () => {
  it("sends the calling device's config byte for byte", async () => {
    const app = unitApp();
    const { device, token } = await app.device({ deviceName: "Hall", nested: { a: [1, 2] } });
    // uses: ["rollouts"] — the device comes with the principal, so the edge's services and the rollouts (which watch
    // the config fetch after a firmware download) are all the route is given.
    const response = await runRoute(config, request("GET", "/iot/config", { token }), { ...app.edge, rollouts: app.services.rollouts });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("cache-control"), "no-cache");
    assert.equal(await response.text(), device.config);
    assert.equal(response.headers.get("x-rotation"), null);
  });

  it("a request with the new secret completes the device's rotation and says so (X-Rotation: completed)", async () => {
    const app = unitApp();
    const { device, token: oldToken } = await app.device();
    await app.services.rotation.rotateDevice(device.id, "test-admin");
    const pkg = await (await app.run(provisioning, request("GET", "/iot/provisioning", { token: oldToken }))).json();
    const response = await app.run(config, request("GET", "/iot/config", { token: deviceToken(device.client_id, pkg.client_secret) }));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-rotation"), "completed");
    assert.equal((await app.services.devices.get(device.id)).rotation_state, "OK");
  });

  it("is for the device itself only", () => expectDeviceOnly(config, "/iot/config"));
});

const NO_TARGET = { firmware_version: null, version_id: null, sha256: null, size: null, elf_sha256: null, secure_version: null, rollout_id: null };
const ELF = "ab".repeat(32);

describe("functions/iot/firmware-version.get.ts", () => {
  it("nulls while the model has no firmware, then the device's target (the stable version) and how to check it", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    assert.deepEqual(await (await app.run(firmwareVersion, request("GET", "/iot/firmware-version", { token }))).json(), NO_TARGET);
    const bytes = buildImage({ version: "3.1.0", size: 2048, elfSha256: ELF, secureVersion: 2 });
    await uploadFirmware(app, device.device_model_id, bytes);
    const [version] = [...app.world.versions.values()];
    assert.deepEqual(await (await app.run(firmwareVersion, request("GET", "/iot/firmware-version", { token }))).json(), {
      firmware_version: "3.1.0",
      version_id: version!.id,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      size: 2048,
      elf_sha256: ELF,
      secure_version: 2,
      rollout_id: null,
    });
  });

  it("takes what report headers say, ignores malformed ones (counted), and never refuses the device for them", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    const headers = { "x-firmware-version": "2.0.0", "x-firmware-elf-sha256": ELF.toUpperCase(), "x-ota-state": "pending_verify" };
    assert.equal((await app.run(firmwareVersion, request("GET", "/iot/firmware-version", { token, headers }))).status, 200);
    const row = app.world.devices.get(device.id)!;
    assert.deepEqual([row.reportedFirmwareVersion, row.reportedElfSha256, row.otaState], ["2.0.0", ELF, "pending_verify"]);
    const bad = { "x-firmware-version": "x".repeat(40), "x-firmware-elf-sha256": "not-hex", "x-ota-state": "sleepy" };
    assert.equal((await app.run(firmwareVersion, request("GET", "/iot/firmware-version", { token, headers: bad }))).status, 200);
    assert.deepEqual([row.reportedFirmwareVersion, row.reportedElfSha256, row.otaState], ["2.0.0", ELF, "pending_verify"]);
    const ignored = await app.services.metrics.deviceReportHeadersIgnored.get();
    assert.deepEqual(ignored.values.map((v) => [v.labels.header, v.value]).sort(), [["x-firmware-elf-sha256", 1], ["x-firmware-version", 1], ["x-ota-state", 1]]);
  });

  it("is for the device itself only", () => expectDeviceOnly(firmwareVersion, "/iot/firmware-version"));
});

describe("functions/iot/firmware.get.ts", () => {
  it("sends the model's image, resumable with Range, 304 for a matching If-None-Match", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    const bytes = buildImage({ version: "3.1.0", size: 4096 });
    await uploadFirmware(app, device.device_model_id, bytes);
    const full = await app.run(firmware, request("GET", "/iot/firmware", { token }));
    assert.equal(full.status, 200);
    assert.deepEqual(new Uint8Array(await full.arrayBuffer()), bytes);
    const rest = await app.run(firmware, request("GET", "/iot/firmware", { token, headers: { range: "bytes=4000-" } }));
    assert.equal(rest.status, 206);
    assert.deepEqual(new Uint8Array(await rest.arrayBuffer()), bytes.slice(4000));
    const etag = full.headers.get("etag")!;
    assert.equal((await app.run(firmware, request("GET", "/iot/firmware", { token, headers: { "if-none-match": etag } }))).status, 304);
    await expectError(await app.run(firmware, request("GET", "/iot/firmware", { token, headers: { range: "bytes=99999-" } })), 416, "RANGE_NOT_SATISFIABLE");
  });

  it("answers 404 FIRMWARE_NOT_FOUND while the model has none", async () => {
    const app = unitApp();
    const { token } = await app.device();
    await expectError(await app.run(firmware, request("GET", "/iot/firmware", { token })), 404, "FIRMWARE_NOT_FOUND");
  });

  it("is for the device itself only", () => expectDeviceOnly(firmware, "/iot/firmware"));
});

describe("functions/iot/state.post.ts", () => {
  it("stores the report and answers with the device's target", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    await uploadFirmware(app, device.device_model_id, buildImage({ version: "3.1.0", size: 2048 }));
    const body = { firmware_version: "3.0.0", elf_sha256: ELF, ota_state: "valid", reset_reason: "ESP_RST_SW", uptime_s: 42, free_heap: 123456, rssi: -61, newer_field: [1] };
    const response = await app.run(state, request("POST", "/iot/state", { token, body }));
    assert.equal(response.status, 200);
    assert.equal((await response.json()).firmware_version, "3.1.0");
    const shown = await app.services.devices.get(device.id);
    assert.deepEqual([shown.running_firmware_version, shown.running_firmware_source, shown.target_firmware_version], ["3.0.0", "reported", "3.1.0"]);
    assert.ok(shown.last_seen_at);
    assert.equal(app.world.devices.get(device.id)!.lastStateReport?.rssi, -61);
  });

  it("refuses a malformed field with 400 VALIDATION_FAILED naming it, and stores nothing", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    for (const [field, value] of [["firmware_version", ""], ["elf_sha256", "12"], ["ota_state", "fine"], ["uptime_s", -1], ["free_heap", 1.5], ["rssi", 300], ["reset_reason", "a b"]] as const) {
      const envelope = await expectError(await app.run(state, request("POST", "/iot/state", { token, body: { [field]: value } })), 400, "VALIDATION_FAILED");
      assert.equal((envelope.details?.errors as { field: string }[])[0]?.field, field);
    }
    assert.equal(app.world.devices.get(device.id)!.lastStateReport, null);
  });

  it("is for the device itself only", () => expectDeviceOnly(state, "/iot/state"));
});

describe("functions/iot/provisioning.get.ts", () => {
  it("outside a rotation: the current secret, unchanged, uncached", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    const secret = await app.identity.getSecret(device.client_id);
    const response = await app.run(provisioning, request("GET", "/iot/provisioning", { token }));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("cache-control"), "no-store");
    const pkg = await response.json();
    assert.deepEqual([pkg.device_key, pkg.client_id, pkg.client_secret], [device.key, device.client_id, secret]);
    assert.equal(await app.identity.getSecret(device.client_id), secret);
  });

  it("while PENDING: a new secret, the same one on every call, and the old secret keeps working", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    const old = await app.identity.getSecret(device.client_id);
    await app.services.rotation.rotateDevice(device.id, "test-admin");
    const first = await (await app.run(provisioning, request("GET", "/iot/provisioning", { token }))).json();
    const again = await (await app.run(provisioning, request("GET", "/iot/provisioning", { token }))).json();
    assert.notEqual(first.client_secret, old);
    assert.equal(again.client_secret, first.client_secret);
    assert.equal(await app.identity.generationOf(device.client_id, old), 1, "the old secret works through its grace time");
  });

  it("answers 400 PROVISIONING_NOT_CONFIGURED without the Wi-Fi settings", async () => {
    const app = unitApp({ env: { WIFI_SSID: "" } });
    const { token } = await app.device();
    await expectError(await app.run(provisioning, request("GET", "/iot/provisioning", { token })), 400, "PROVISIONING_NOT_CONFIGURED");
  });

  it("is for the device itself only", () => expectDeviceOnly(provisioning, "/iot/provisioning"));
});

describe("functions/iot/logs.post.ts", () => {
  it("is for devices only", () => expectDeviceOnly(logs, "/iot/logs"));

  it("stores the good lines of the calling device, skips and counts the bad ones", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    const body = [JSON.stringify({ message: "ok 1", entity_id: "someone.else" }), "nope", JSON.stringify({ level: "I" }), JSON.stringify({ message: "ok 2", level: "W" })].join("\n");
    const response = await app.run(logs, request("POST", "/iot/logs", { token, body, headers: { "content-type": "application/x-ndjson" } }));
    assert.equal(response.status, 202);
    assert.deepEqual(await response.json(), { accepted: 2, rejected: 2 });
    await app.services.deviceLogs.flush();
    assert.deepEqual(
      app.logStore.lines.map(({ deviceId, message, attributes }) => ({ deviceId, message, attributes })),
      [
        { deviceId: device.id, message: "ok 1", attributes: null },
        { deviceId: device.id, message: "ok 2", attributes: { level: "W" } },
      ],
    );
  });

  it("refuses too many lines (413), a rate beyond the device's (429 with Retry-After) and other media types (415)", async () => {
    const app = unitApp({ env: { DEVICE_LOG_MAX_LINES_PER_REQUEST: "10", DEVICE_LOG_RATE_LINES_PER_SECOND: "1" } });
    const { token } = await app.device();
    const lines = (n: number) => Array(n).fill(JSON.stringify({ message: "m" })).join("\n");
    const post = (body: string, type = "application/x-ndjson") => app.run(logs, request("POST", "/iot/logs", { token, body, headers: { "content-type": type } }));
    await expectError(await post(lines(11)), 413, "TOO_MANY_LINES");
    assert.equal((await post(lines(10))).status, 202);
    const limited = await expectError(await post(lines(10)), 429, "RATE_LIMITED");
    assert.ok(Number(limited.details?.retry_after_seconds) >= 1);
    await expectError(await post(lines(1), "application/xml"), 415, "UNSUPPORTED_MEDIA_TYPE");
  });
});

describe("functions/iot/coredump.post.ts", () => {
  it("is for devices only", () => expectDeviceOnly(coredump, "/iot/coredump"));

  it("stores the calling device's dump as sent and counts the crash (a version the model lacks as unknown)", async () => {
    const app = unitApp();
    const { device, token } = await app.device();
    const elf = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]);
    const response = await app.run(coredump, request("POST", "/iot/coredump?chip=esp32c3&firmware_version=v9", { token, body: new Blob([elf]), headers: { "content-type": "application/octet-stream" } }));
    assert.equal(response.status, 201);
    const stored = (await response.json()) as { id: number; chip: string; firmware_version: string; size: number };
    assert.deepEqual([stored.chip, stored.firmware_version, stored.size], ["esp32c3", "v9", 7]);
    assert.deepEqual(new Uint8Array((await app.services.coreDumps.get(device.id, stored.id)).content), elf);
    const crashes = await app.services.deviceLogMetrics.crashes.get();
    assert.deepEqual(crashes.values.map((v) => [v.labels.firmware_version, v.value]), [["unknown", 1]]);
  });

  it("refuses an empty body (400), a body over COREDUMP_MAX_BYTES (413) and another media type (415)", async () => {
    const app = unitApp({ env: { COREDUMP_MAX_BYTES: "1024" } });
    const { token } = await app.device();
    const post = (body: Uint8Array, type = "application/octet-stream") =>
      app.run(coredump, request("POST", "/iot/coredump", { token, body: new Blob([body as BlobPart]), headers: { "content-type": type } }));
    await expectError(await post(new Uint8Array(0)), 400, "EMPTY_BODY");
    await expectError(await post(new Uint8Array(1025)), 413, "PAYLOAD_TOO_LARGE");
    await expectError(await post(new Uint8Array(4), "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE");
  });
});
