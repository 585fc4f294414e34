/** Firmware history per model (issue 13 §1): every accepted upload is a version; list, read, download, delete. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { devices, firmwareVersions } from "../db/schema.ts";
import { ADMIN_TOKEN, createTestApp, type TestApp } from "./support/app.ts";
import { assertErrorEnvelope, snapshotData } from "./support/envelope.ts";
import { buildImage, readVector } from "./support/firmware-image.ts";

const blink = readVector("esp_idf_blink_esp32s2.bin");
const BLINK_VERSION = "qa-test-v5.0-20220830-4-g4532e6";
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const bytesOf = async (response: Response) => new Uint8Array(await response.arrayBuffer());

type Version = { id: number; version: string; sha256: string; stable: boolean; notes: string | null } & Record<string, unknown>;

describe("firmware versions", () => {
  let app: TestApp;
  let assetsDir: string;
  let model: number;
  let other: number;
  let deviceToken: string;
  const second = buildImage({ version: "2.0.0", secureVersion: 3, elfSha256: "cd".repeat(32), size: 60_000 });

  const send = (method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string> } = {}) =>
    app.fetch(new Request(`http://iot.test${path}`, { method, body: init.body, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers } }));
  const upload = (id: number, bytes: Uint8Array, query = "") =>
    send("POST", `/api/device-models/${id}/firmware?rollout=immediate${query.replace(/^\?/, "&")}`, { body: bytes as BodyInit, headers: { "content-type": "application/octet-stream" } });
  const versionsOf = async (id: number) => (await (await send("GET", `/api/device-models/${id}/firmware/versions`)).json()) as { versions: Version[]; count: number };
  const stableOf = async (id: number) => (await (await send("GET", `/api/device-models/${id}`)).json()).firmware_version as string | null;
  const filesOf = (code: string) => (existsSync(join(assetsDir, code)) ? readdirSync(join(assetsDir, code)).sort() : []);
  const tempFiles = () => readdirSync(assetsDir).filter((name) => name.endsWith(".tmp"));
  const deviceDownload = (headers: Record<string, string> = {}) =>
    app.fetch(new Request("http://iot.test/iot/firmware", { headers: { authorization: `Bearer ${deviceToken}`, ...headers } }));

  before(async () => {
    app = await createTestApp({ env: { ROTATION_SCHEDULER: "external" } });
    assetsDir = app.services.config.assetsDir;
    const create = async (code: string) => (await (await app.call("POST", "/api/device-models", { body: { code, name: code } })).json()).id as number;
    model = await create("hist");
    other = await create("hist_other");
    const device = await (await app.call("POST", "/api/devices", { body: { device_model_id: model, config: "{}" } })).json();
    deviceToken = (await app.services.builtinIssuer!.issueToken(device.client_id, 1)).access_token;
  });
  after(() => app.close());

  test("a model without uploads has no versions", async () => {
    assert.deepEqual(await versionsOf(model), { versions: [], count: 0 });
  });

  test("each upload adds a version, newest first, with what its app descriptor says; the newest is stable", async () => {
    const first = await upload(model, blink, "?notes=first%20build");
    assert.equal(first.status, 200, await first.clone().text());
    const firstAnswer = await first.json();
    const next = await upload(model, second);
    assert.equal(next.status, 200, await next.clone().text());
    const nextAnswer = await next.json();
    assert.deepEqual(nextAnswer, { id: model, code: "hist", firmware_version: "2.0.0", version_id: nextAnswer.version_id, rollout: "immediate", rollout_id: null });
    assert.notEqual(nextAnswer.version_id, firstAnswer.version_id);

    const { versions, count } = await versionsOf(model);
    assert.equal(count, 2);
    const [newest, oldest] = versions;
    assert.deepEqual(newest, {
      id: nextAnswer.version_id,
      version: "2.0.0",
      sha256: sha256(second),
      size: second.length,
      elf_sha256: "cd".repeat(32),
      secure_version: 3,
      project_name: "bench",
      chip: "ESP32-S2",
      idf_version: "v5.3",
      uploaded_at: newest!.uploaded_at,
      uploaded_by: "admin-api-token",
      notes: null,
      stable: true,
    });
    assert.deepEqual(oldest, {
      id: firstAnswer.version_id,
      version: BLINK_VERSION,
      sha256: sha256(blink),
      size: blink.length,
      elf_sha256: "3059e6b55a965865febd28fa9f6028ad5cd0dab311febb0a3ea79eaa223ac2b0",
      secure_version: 0,
      project_name: "blink",
      chip: "ESP32-S2",
      idf_version: "v5.0-beta1-427-g4532e6e0b2-dirt",
      uploaded_at: oldest!.uploaded_at,
      uploaded_by: "admin-api-token",
      notes: "first build",
      stable: false,
    });
    assert.ok(Date.parse(newest!.uploaded_at as string) >= Date.parse(oldest!.uploaded_at as string));
    assert.equal(await stableOf(model), "2.0.0");
    assert.equal(filesOf("hist").length, 2, "one file per version");
    assert.equal(sha256(await bytesOf(await deviceDownload())), sha256(second), "devices get the stable version");
  });

  test("the same bytes again are the same version: nothing duplicated, it becomes stable again, its notes stay", async () => {
    const before = await versionsOf(model);
    const blinkVersion = before.versions.find((v) => v.version === BLINK_VERSION)!;
    const again = await upload(model, blink, "?notes=ignored");
    assert.equal(again.status, 200);
    assert.deepEqual(await again.json(), { id: model, code: "hist", firmware_version: BLINK_VERSION, version_id: blinkVersion.id, rollout: "immediate", rollout_id: null });

    const after = await versionsOf(model);
    assert.equal(after.count, 2);
    const stable = after.versions.filter((v) => v.stable);
    assert.deepEqual(stable, [{ ...blinkVersion, stable: true }], "the version is unchanged but stable");
    assert.equal(await stableOf(model), BLINK_VERSION);
    assert.equal(filesOf("hist").length, 2, "its file was replaced, not added to");
    const download = await deviceDownload();
    assert.equal(download.headers.get("etag"), `"${sha256(blink)}"`);
    assert.deepEqual(await bytesOf(download), blink);
  });

  test("another image with an existing version string: 409 naming the version; nothing changed, no file left", async () => {
    const before = await snapshotData(app);
    const files = filesOf("hist");
    const impostor = buildImage({ version: "2.0.0", size: 50_000 });
    const envelope = await assertErrorEnvelope(await upload(model, impostor, "?notes=impostor"), 409, "reused version string");
    assert.equal(envelope.code, "FIRMWARE_VERSION_EXISTS");
    assert.match(envelope.error, /version "2\.0\.0" with different bytes/);
    assert.equal(envelope.details!.uploaded_sha256, sha256(impostor));
    assert.equal(envelope.details!.sha256, sha256(second));
    assert.deepEqual(await snapshotData(app), before);
    assert.deepEqual(filesOf("hist"), files);
    assert.deepEqual(tempFiles(), []);
    assert.equal(await stableOf(model), BLINK_VERSION);
  });

  test("a staged upload the pre-flight refuses (another project, a secure_version below one devices run): 409, nothing stored", async () => {
    const id = (await (await app.call("POST", "/api/device-models", { body: { code: "preflight", name: "Preflight" } })).json()).id as number;
    assert.equal((await upload(id, buildImage({ version: "1.0.0", secureVersion: 3, size: 4096 }))).status, 200);
    const device = await (await app.call("POST", "/api/devices", { body: { device_model_id: id, config: "{}" } })).json();
    // The device said it runs 1.0.0 (secure_version 3): its eFuses refuse anything lower.
    await app.services.database.db.update(devices).set({ reportedFirmwareVersion: "1.0.0" }).where(eq(devices.id, device.id));
    const staged = (bytes: Uint8Array) =>
      send("POST", `/api/device-models/${id}/firmware?rollout=staged`, { body: bytes as BodyInit, headers: { "content-type": "application/octet-stream" } });
    const before = await snapshotData(app);
    const files = filesOf("preflight");
    const cases = [
      [buildImage({ version: "2.0.0", secureVersion: 3, projectName: "other", size: 4096 }), "IMAGE_CHANGE_NOT_CONFIRMED"],
      [buildImage({ version: "2.0.1", secureVersion: 1, size: 4096 }), "SECURE_VERSION_TOO_LOW"],
    ] as const;
    for (const [bytes, code] of cases) {
      const envelope = await assertErrorEnvelope(await staged(bytes), 409, code);
      assert.equal(envelope.code, code);
    }
    assert.deepEqual(await snapshotData(app), before);
    assert.deepEqual(filesOf("preflight"), files);
    assert.deepEqual(tempFiles(), []);
  });

  test("notes: at most 1000 characters, and no other query parameter", async () => {
    const before = await snapshotData(app);
    for (const query of [`?notes=${"x".repeat(1001)}`, "?note=typo", "?notes=a&notes=b"]) {
      const envelope = await assertErrorEnvelope(await upload(model, buildImage({ version: "never", size: 5000 }), query), 400, query);
      assert.equal(envelope.code, "VALIDATION_FAILED");
    }
    assert.deepEqual(await snapshotData(app), before);
    assert.deepEqual(tempFiles(), []);
  });

  test("one version's metadata; versions of another model and unknown ones are 404", async () => {
    const { versions } = await versionsOf(model);
    for (const version of versions) {
      const response = await send("GET", `/api/device-models/${model}/firmware/versions/${version.id}`);
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), version);
    }
    const vid = versions[0]!.id;
    for (const [path, code] of [
      [`/api/device-models/${other}/firmware/versions/${vid}`, "FIRMWARE_VERSION_NOT_FOUND"],
      [`/api/device-models/${other}/firmware/versions/${vid}/image`, "FIRMWARE_VERSION_NOT_FOUND"],
      [`/api/device-models/${model}/firmware/versions/999999`, "FIRMWARE_VERSION_NOT_FOUND"],
      [`/api/device-models/999999/firmware/versions/${vid}`, "DEVICE_MODEL_NOT_FOUND"],
      [`/api/device-models/${model}/firmware/versions/0x1`, "NOT_FOUND"],
    ] as const) {
      assert.equal((await assertErrorEnvelope(await send("GET", path), 404, path)).code, code, path);
    }
    const before = await snapshotData(app);
    const refused = await send("DELETE", `/api/device-models/${other}/firmware/versions/${versions[1]!.id}`);
    assert.equal((await assertErrorEnvelope(refused, 404, "delete through another model")).code, "FIRMWARE_VERSION_NOT_FOUND");
    assert.deepEqual(await snapshotData(app), before);
  });

  test("a version's image: the bytes, its ETag, Range, If-None-Match, 416", async () => {
    const { versions } = await versionsOf(model);
    const old = versions.find((v) => v.version === "2.0.0")!;
    assert.equal(old.stable, false, "a version that is not the stable one can be downloaded too");
    const path = `/api/device-models/${model}/firmware/versions/${old.id}/image`;
    const full = await send("GET", path);
    assert.equal(full.status, 200);
    assert.equal(full.headers.get("etag"), `"${sha256(second)}"`);
    assert.equal(full.headers.get("content-length"), String(second.length));
    assert.equal(full.headers.get("accept-ranges"), "bytes");
    assert.equal(full.headers.get("content-disposition"), 'attachment; filename="firmware-hist-2.0.0.bin"');
    assert.equal(Date.parse(full.headers.get("last-modified")!), Math.floor(Date.parse(old.uploaded_at as string) / 1000) * 1000);
    assert.deepEqual(await bytesOf(full), second);

    const part = await send("GET", path, { headers: { range: "bytes=100-199" } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), `bytes 100-199/${second.length}`);
    assert.deepEqual(await bytesOf(part), second.subarray(100, 200));

    const unchanged = await send("GET", path, { headers: { "if-none-match": `"${sha256(second)}"` } });
    assert.equal(unchanged.status, 304);
    assert.equal((await unchanged.arrayBuffer()).byteLength, 0);

    const outside = await send("GET", path, { headers: { range: `bytes=${second.length}-` } });
    assert.equal((await assertErrorEnvelope(outside, 416, "range outside")).code, "RANGE_NOT_SATISFIABLE");
  });

  test("the stable version cannot be deleted: 409, nothing changed, its file stays", async () => {
    const stable = (await versionsOf(model)).versions.find((v) => v.stable)!;
    const before = await snapshotData(app);
    const files = filesOf("hist");
    const envelope = await assertErrorEnvelope(await send("DELETE", `/api/device-models/${model}/firmware/versions/${stable.id}`), 409, "delete stable");
    assert.equal(envelope.code, "FIRMWARE_VERSION_IN_USE");
    assert.match(envelope.error, new RegExp(`"${BLINK_VERSION}".*stable version`));
    assert.deepEqual(await snapshotData(app), before);
    assert.deepEqual(filesOf("hist"), files);
    assert.deepEqual(await bytesOf(await deviceDownload()), blink);
  });

  test("deleting an older version removes it and its file; the stable one is served as before", async () => {
    const old = (await versionsOf(model)).versions.find((v) => !v.stable)!;
    const [row] = await app.services.database.db.select().from(firmwareVersions).where(eq(firmwareVersions.id, old.id));
    assert.ok(existsSync(join(assetsDir, row!.file)));
    const path = `/api/device-models/${model}/firmware/versions/${old.id}`;
    assert.equal((await send("DELETE", path)).status, 204);
    assert.equal(existsSync(join(assetsDir, row!.file)), false, "its file is gone");
    assert.deepEqual((await versionsOf(model)).versions.map((v) => v.version), [BLINK_VERSION]);
    assert.equal(filesOf("hist").length, 1);
    for (const gone of [path, `${path}/image`]) assert.equal((await assertErrorEnvelope(await send("GET", gone), 404, gone)).code, "FIRMWARE_VERSION_NOT_FOUND");
    assert.equal((await assertErrorEnvelope(await send("DELETE", path), 404, "delete twice")).code, "FIRMWARE_VERSION_NOT_FOUND");
    assert.deepEqual(await bytesOf(await deviceDownload()), blink);

    const reupload = await upload(model, second);
    assert.equal(reupload.status, 200, "a deleted version string can be used again");
    assert.notEqual((await reupload.json()).version_id, old.id);
  });

  test("at start, the orphan sweep keeps the file of every version, not only the stable one's", async () => {
    const kept = filesOf("hist");
    assert.equal(kept.length, 2);
    writeFileSync(join(assetsDir, "hist", "0000-orphan.bin"), "x");
    const hourAgo = new Date(Date.now() - 3600_000);
    for (const name of [...kept, "0000-orphan.bin"]) utimesSync(join(assetsDir, "hist", name), hourAgo, hourAgo);
    await app.services.firmware.init();
    assert.deepEqual(filesOf("hist"), kept);
  });

  test("deleting a model removes all its versions and their files", async () => {
    const id = (await (await app.call("POST", "/api/device-models", { body: { code: "hist_gone", name: "Gone" } })).json()).id;
    for (const image of [blink, second, buildImage({ version: "3.0.0", size: 20_000 })]) assert.equal((await upload(id, image)).status, 200);
    assert.equal(filesOf("hist_gone").length, 3);
    assert.equal((await send("DELETE", `/api/device-models/${id}`)).status, 204);
    assert.deepEqual(await app.services.database.db.select().from(firmwareVersions).where(eq(firmwareVersions.deviceModelId, id)), []);
    assert.equal(existsSync(join(assetsDir, "hist_gone")), false);
    assert.equal((await versionsOf(model)).count, 2, "other models keep theirs");
  });
});
