/**
 * Behaviour the firmware store must have for firmware versions (docs/firmware.md "Firmware versions"), with the
 * rollout service deciding what an upload becomes (immediate: the stable version at once; staged with no device to
 * stage: the same, through a completed rollout; the staged pre-flight): the real ones on PostgreSQL and a data
 * directory, and the in-memory fakes, run the same suite, so a unit test over the fakes sees the versions, statuses
 * and codes the real ones give.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { ModelRow } from "../../db/schema.ts";
import type { DeviceModelService } from "../../lib/device-models.ts";
import type { DeviceService } from "../../lib/devices.ts";
import { AppError } from "../../lib/errors.ts";
import type { FirmwareStore } from "../../lib/firmware/store.ts";
import type { RolloutService } from "../../lib/rollouts/service.ts";
import type { FileSource } from "../../lib/stored-file.ts";
import { buildImage } from "./firmware-image.ts";
import type { Notice } from "./fakes/notifier.ts";

export type FirmwareStoreSetup = () => Promise<{
  models: DeviceModelService;
  devices: DeviceService;
  firmware: FirmwareStore;
  rollouts: RolloutService;
  /** Notices published so far. */
  notices(): Notice[];
  close(): Promise<void>;
}>;

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const BY = { notes: null, uploadedBy: "admin-api-token" };

async function* chunksOf(bytes: Uint8Array) {
  for (let at = 0; at < bytes.length; at += 1000) yield bytes.subarray(at, at + 1000);
}

async function bytesOf(source: FileSource): Promise<Uint8Array> {
  const file = await source.open();
  if (Buffer.isBuffer(file.content)) return new Uint8Array(file.content);
  const parts: Buffer[] = [];
  for await (const chunk of file.content.createReadStream({ start: 0, end: file.size - 1 })) parts.push(chunk as Buffer);
  await file.content.close();
  return new Uint8Array(Buffer.concat(parts));
}

async function rejects(promise: Promise<unknown>, status: number, code: string) {
  let caught: unknown;
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`);
    assert.deepEqual([error.status, error.code], [status, code], error.message);
    caught = error;
    return true;
  });
  return caught as AppError;
}

export function describeFirmwareStoreContract(name: string, setup: FirmwareStoreSetup): void {
  describe(`Firmware store contract: ${name}`, () => {
    let env: Awaited<ReturnType<FirmwareStoreSetup>>;
    // Codes unique per run: the real store shares one database and data directory across the cases.
    const newModel = async () => env.models.findRow((await env.models.create({ code: `f_${randomBytes(5).toString("hex")}`, name: "A model", config_schema: null }, "test-admin")).id);
    /** An upload with ?rollout=immediate: recorded, then the stable version. */
    const save = async (model: ModelRow, bytes: Uint8Array, by: { notes: string | null; uploadedBy: string } = BY) => {
      const version = await env.firmware.save(model, chunksOf(bytes), by);
      await env.rollouts.afterUpload(await reread(model), version, "immediate", {}, "admin-api-token");
      return version;
    };
    const reread = (model: ModelRow) => env.models.findRow(model.id);
    const image = (version: string) => buildImage({ version, size: 5000, secureVersion: 7, elfSha256: "ef".repeat(32) });

    before(async () => {
      env = await setup();
    });
    after(() => env?.close());

    it("an upload is a version of the model that becomes stable; the model row copies it and its devices are told", async () => {
      const model = await newModel();
      const device = await env.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin");
      const bytes = image("1.0.0");
      const before = env.notices().length;
      const version = await save(model, bytes, { notes: "first", uploadedBy: "someone" });
      assert.deepEqual(
        { ...version, id: typeof version.id, file: typeof version.file, uploadedAt: version.uploadedAt instanceof Date },
        {
          id: "number",
          deviceModelId: model.id,
          version: "1.0.0",
          file: "string",
          sha256: sha256(bytes),
          size: bytes.length,
          elfSha256: "ef".repeat(32),
          secureVersion: 7,
          projectName: "bench",
          chip: "ESP32-S2",
          idfVersion: version.idfVersion,
          notes: "first",
          uploadedAt: true,
          uploadedBy: "someone",
        },
      );
      const row = await reread(model);
      assert.deepEqual([row.stableVersionId, row.firmwareVersion, row.firmwareSha256, row.firmwareSize], [version.id, "1.0.0", sha256(bytes), bytes.length]);
      assert.deepEqual(env.notices().slice(before), [{ kind: "firmware", clientId: device.client_id, payload: { client_id: device.client_id, firmware_version: "1.0.0" } }]);
      assert.deepEqual(await bytesOf(env.firmware.source(row)), bytes);
      const served = env.firmware.source(row);
      assert.equal(served.etag, `"${sha256(bytes)}"`);
    });

    it("versions are listed newest first; each one is readable and its image downloadable", async () => {
      const model = await newModel();
      const first = image("1.0.0");
      const second = image("2.0.0");
      const one = await save(model, first);
      const two = await save(model, second);
      const listed = await env.firmware.listVersions(await reread(model));
      assert.deepEqual(listed.map((v) => [v.id, v.version]), [[two.id, "2.0.0"], [one.id, "1.0.0"]]);
      assert.deepEqual(await env.firmware.version(model, one.id), listed[1]);
      const source = env.firmware.versionSource(model, await env.firmware.version(model, one.id));
      assert.equal(source.etag, `"${sha256(first)}"`);
      assert.deepEqual(await bytesOf(source), first);
      assert.equal((await reread(model)).stableVersionId, two.id);
    });

    it("the same bytes again are the same version, stable again, its notes and uploader kept", async () => {
      const model = await newModel();
      const first = image("1.0.0");
      const one = await save(model, first, { notes: "first", uploadedBy: "a" });
      await save(model, image("2.0.0"));
      const again = await save(model, first, { notes: "again", uploadedBy: "b" });
      assert.deepEqual([again.id, again.notes, again.uploadedBy, again.sha256], [one.id, "first", "a", sha256(first)]);
      const row = await reread(model);
      assert.deepEqual([row.stableVersionId, row.firmwareVersion], [one.id, "1.0.0"]);
      assert.equal((await env.firmware.listVersions(row)).length, 2);
      assert.deepEqual(await bytesOf(env.firmware.source(row)), first);
      assert.deepEqual(await bytesOf(env.firmware.versionSource(row, await env.firmware.version(row, one.id))), first);
    });

    it("the stable version's bytes recorded again, before anything promotes them: the model's download still serves them", async () => {
      const model = await newModel();
      const first = image("1.0.0");
      await save(model, first);
      // A staged re-upload records the version and may leave it to a rollout: the model row must not name the old file.
      await env.firmware.save(await reread(model), chunksOf(first), BY);
      assert.deepEqual(await bytesOf(env.firmware.source(await reread(model))), first);
    });

    it("another image with a version string the model has: 409 FIRMWARE_VERSION_EXISTS with both SHA-256s, nothing changed", async () => {
      const model = await newModel();
      const first = image("1.0.0");
      const one = await save(model, first);
      const impostor = image("1.0.0");
      const error = await rejects(save(model, impostor), 409, "FIRMWARE_VERSION_EXISTS");
      assert.deepEqual(error.details, { version: "1.0.0", version_id: one.id, sha256: sha256(first), uploaded_sha256: sha256(impostor) });
      const row = await reread(model);
      assert.deepEqual((await env.firmware.listVersions(row)).map((v) => [v.id, v.sha256]), [[one.id, sha256(first)]]);
      assert.deepEqual(await bytesOf(env.firmware.source(row)), first);
    });

    it("what is not an image: 400 INVALID_FIRMWARE, no version; a model without uploads has no firmware (404)", async () => {
      const model = await newModel();
      await rejects(save(model, new Uint8Array(2000)), 400, "INVALID_FIRMWARE");
      assert.deepEqual(await env.firmware.listVersions(await reread(model)), []);
      assert.throws(() => env.firmware.source(model), (error: unknown) => error instanceof AppError && error.code === "FIRMWARE_NOT_FOUND");
    });

    it("a version of another model, or an unknown one: 404 FIRMWARE_VERSION_NOT_FOUND to read and to delete", async () => {
      const model = await newModel();
      const other = await newModel();
      const foreign = await save(other, image("1.0.0"));
      for (const id of [foreign.id, 999_999]) {
        await rejects(env.firmware.version(model, id), 404, "FIRMWARE_VERSION_NOT_FOUND");
        await rejects(env.firmware.deleteVersion(model, id, "test-admin"), 404, "FIRMWARE_VERSION_NOT_FOUND");
      }
      assert.equal((await env.firmware.listVersions(other)).length, 1);
    });

    it("the stable version cannot be deleted (409 FIRMWARE_VERSION_IN_USE); an older one can, once", async () => {
      const model = await newModel();
      const first = image("1.0.0");
      const second = image("2.0.0");
      const one = await save(model, first);
      const two = await save(model, second);
      await rejects(env.firmware.deleteVersion(await reread(model), two.id, "test-admin"), 409, "FIRMWARE_VERSION_IN_USE");
      await env.firmware.deleteVersion(await reread(model), one.id, "test-admin");
      await rejects(env.firmware.version(model, one.id), 404, "FIRMWARE_VERSION_NOT_FOUND");
      await rejects(env.firmware.deleteVersion(model, one.id, "test-admin"), 404, "FIRMWARE_VERSION_NOT_FOUND");
      const row = await reread(model);
      assert.deepEqual((await env.firmware.listVersions(row)).map((v) => v.id), [two.id]);
      assert.deepEqual(await bytesOf(env.firmware.source(row)), second);
      // Deleted, its version string is free again, for other bytes too.
      const three = await save(model, image("1.0.0"));
      assert.notEqual(three.id, one.id);
    });

    it("staged with no device to stage: a completed rollout, and the version stable at once", async () => {
      const model = await newModel();
      const one = await save(model, image("1.0.0"));
      const two = await env.firmware.save(await reread(model), chunksOf(image("2.0.0")), BY);
      const rollout = await env.rollouts.afterUpload(await reread(model), two, "staged", {}, "someone");
      assert.deepEqual([rollout?.state, rollout?.versionId, rollout?.previousVersionId, rollout?.createdBy], ["completed", two.id, one.id, "someone"]);
      assert.equal((await reread(model)).stableVersionId, two.id);
    });

    it("the staged pre-flight refuses another chip or project, or an older image, unless confirmed", async () => {
      const model = await newModel();
      await save(model, image("1.0.0"));
      const row = await reread(model);
      const candidate = { version: "2.0.0", chip: row.firmwareChip!, projectName: row.firmwareProjectName!, secureVersion: 7 };
      await env.rollouts.check(row, candidate, {});
      await rejects(env.rollouts.check(row, { ...candidate, chip: "ESP32-C3" }, {}), 409, "IMAGE_CHANGE_NOT_CONFIRMED");
      await rejects(env.rollouts.check(row, { ...candidate, projectName: "other" }, {}), 409, "IMAGE_CHANGE_NOT_CONFIRMED");
      await env.rollouts.check(row, { ...candidate, chip: "ESP32-C3" }, { confirm_image_change: true });
      await save(model, image("2.0.0"));
      // 1.0.0 again is the older version: a downgrade.
      await rejects(env.rollouts.check(await reread(model), { ...candidate, version: "1.0.0" }, {}), 409, "DOWNGRADE_NOT_CONFIRMED");
      await env.rollouts.check(await reread(model), { ...candidate, version: "1.0.0" }, { confirm_downgrade: true });
    });

    it("deleting a model deletes its versions; an upload for a model that is gone is 404 DEVICE_MODEL_NOT_FOUND", async () => {
      const model = await newModel();
      const version = await save(model, image("1.0.0"));
      await env.models.remove(model.id, "test-admin");
      await rejects(env.firmware.version(model, version.id), 404, "FIRMWARE_VERSION_NOT_FOUND");
      assert.deepEqual(await env.firmware.listVersions(model), []);
      await rejects(save(model, image("2.0.0")), 404, "DEVICE_MODEL_NOT_FOUND");
    });
  });
}
