/**
 * The firmware volume refuses an upload (CONTRACT §6): full, the upload answers 507 INSUFFICIENT_STORAGE, read-only
 * 507 STORAGE_READ_ONLY; either way the model keeps its current firmware, no temporary file is left behind, and the
 * operator finds the reason in the log. The volume is a real tmpfs of 1 MiB (test/support/small-volume.ts).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { createLogger } from "../lib/logger.ts";
import { ADMIN_TOKEN, createTestApp, type TestApp } from "./support/app.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { buildImage } from "./support/firmware-image.ts";
import { mountSmallVolume, type SmallVolume } from "./support/small-volume.ts";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("firmware storage that refuses the image", () => {
  let volume: SmallVolume;
  let app: TestApp;
  let modelId: number;
  const logLines: { level: string; message: string }[] = [];
  const current = buildImage({ version: "1.0-fits", size: 300 * 1024 });

  const upload = (image: Uint8Array<ArrayBuffer>) =>
    app.fetch(
      new Request(`http://iot.test/api/device-models/${modelId}/firmware?rollout=immediate`, {
        method: "POST",
        body: image,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
      }),
    );
  async function assertCurrentFirmwareKept() {
    const model = await (await app.call("GET", `/api/device-models/${modelId}`)).json();
    assert.equal(model.firmware_version, "1.0-fits");
    const download = await app.call("GET", `/api/device-models/${modelId}/firmware`);
    assert.equal(download.status, 200);
    assert.equal(sha256(new Uint8Array(await download.arrayBuffer())), sha256(current));
    assert.deepEqual(readdirSync(volume.path).filter((name) => name.endsWith(".tmp")), [], "no temporary file left");
  }

  before(async () => {
    volume = mountSmallVolume("1m");
    app = await createTestApp({ env: { ASSETS_DIR: volume.path }, overrides: { logger: createLogger("info", {}, (line) => logLines.push(JSON.parse(line))) } });
    modelId = (await (await app.call("POST", "/api/device-models", { body: { code: "tiny_disk", name: "Tiny disk" } })).json()).id;
    assert.equal((await upload(current)).status, 200);
  });
  after(async () => {
    await app.close();
    volume.remove();
  });

  test("full: 507 INSUFFICIENT_STORAGE, the current firmware stays, and the next image that fits is stored", async () => {
    const response = await upload(buildImage({ version: "2.0-too-big", size: 2 * 1024 * 1024 }));
    const envelope = await assertErrorEnvelope(response, 507, "an upload larger than the free space");
    assert.equal(envelope.code, "INSUFFICIENT_STORAGE");
    assert.match(envelope.error, /not enough space .* firmware storage/);
    await assertCurrentFirmwareKept();
    assert.ok(logLines.some((line) => line.level === "error" && line.message === "Firmware storage is full"));

    const next = buildImage({ version: "1.1-fits", size: 300 * 1024 });
    assert.equal((await upload(next)).status, 200, "the space of the refused upload was given back");
    assert.equal((await (await app.call("GET", `/api/device-models/${modelId}`)).json()).firmware_version, "1.1-fits");
    assert.equal((await upload(current)).status, 200);
  });

  test("read-only: 507 STORAGE_READ_ONLY, the current firmware stays", async () => {
    volume.makeReadOnly();
    const envelope = await assertErrorEnvelope(await upload(buildImage({ version: "3.0", size: 4096 })), 507, "an upload to a read-only volume");
    assert.equal(envelope.code, "STORAGE_READ_ONLY");
    await assertCurrentFirmwareKept();
  });
});
