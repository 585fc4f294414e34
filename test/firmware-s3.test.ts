/**
 * FIRMWARE_STORE=s3 on a real S3 server (S3Proxy, started by s3proxy/start.sh): uploads streamed into the bucket and
 * promoted only when complete, downloads with Range and ETag from the shared copy in memory or by ranged GETs, objects
 * removed after the commits that stop using them, and leftovers swept at start.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { after, before, describe, test } from "node:test";
import { ListMultipartUploadsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { ADMIN_TOKEN, createTestApp } from "./support/app.ts";
import { buildImage } from "./support/firmware-image.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { createTestBucket, type TestBucket } from "./support/s3.ts";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

const MODES = [
  { name: "images served from memory", env: {} as Record<string, string> },
  { name: "FIRMWARE_CACHE_BYTES=0: every download is a ranged GET", env: { FIRMWARE_CACHE_BYTES: "0" } },
];

for (const mode of MODES) describe(`firmware in an S3 bucket, ${mode.name}`, () => {
  let bucket: TestBucket;
  let server: TestServer;

  const admin = (method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string> } = {}) =>
    fetch(server.url + path, { method, body: init.body, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers }, duplex: "half" } as RequestInit);
  const upload = (model: number, bytes: Uint8Array) =>
    admin("POST", `/api/device-models/${model}/firmware?rollout=immediate`, { body: bytes as BodyInit, headers: { "content-type": "application/octet-stream" } });
  const newModel = async (code: string) => (await (await server.admin("POST", "/api/device-models", { code, name: code })).json()).id as number;
  const imageKeys = async (code: string) => (await bucket.keys()).filter((key) => key.startsWith(`${code}/`));
  const tempKeys = async () => (await bucket.keys()).filter((key) => key.startsWith(".upload-"));

  before(async () => {
    bucket = await createTestBucket();
    server = await startTestServer({ env: { ...bucket.env, ...mode.env } });
  });
  after(async () => {
    await server?.close();
    await bucket?.drop();
  });

  test("an image larger than one multipart part is stored as one object and served whole, by range and by ETag", async () => {
    const model = await newModel("big");
    const image = buildImage({ version: "1.0.0", size: 6 * 1024 * 1024 + 4321 });
    const uploaded = await upload(model, image);
    assert.equal(uploaded.status, 200, await uploaded.clone().text());
    const keys = await imageKeys("big");
    assert.equal(keys.length, 1);
    assert.match(keys[0]!, new RegExp(`^big/${sha256(image)}-[0-9a-f]+\\.bin$`));
    assert.deepEqual(await tempKeys(), []);

    const whole = await admin("GET", `/api/device-models/${model}/firmware`);
    assert.equal(whole.status, 200);
    const etag = `"${sha256(image)}"`;
    assert.equal(whole.headers.get("etag"), etag);
    assert.equal(whole.headers.get("content-length"), String(image.length));
    assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), image);

    const part = await admin("GET", `/api/device-models/${model}/firmware`, { headers: { range: "bytes=5242000-5243999" } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), `bytes 5242000-5243999/${image.length}`);
    assert.deepEqual(new Uint8Array(await part.arrayBuffer()), image.subarray(5242000, 5244000));

    const tail = await admin("GET", `/api/device-models/${model}/firmware`, { headers: { range: `bytes=${image.length - 10}-`, "if-range": etag } });
    assert.equal(tail.status, 206);
    assert.deepEqual(new Uint8Array(await tail.arrayBuffer()), image.subarray(image.length - 10));

    const unchanged = await admin("GET", `/api/device-models/${model}/firmware`, { headers: { "if-none-match": etag } });
    assert.equal(unchanged.status, 304);
    const outside = await admin("GET", `/api/device-models/${model}/firmware`, { headers: { range: `bytes=${image.length}-` } });
    assert.equal(outside.status, 416);
    assert.equal(outside.headers.get("content-range"), `bytes */${image.length}`);
    await outside.arrayBuffer();
  });

  test("a refused, truncated or too large image leaves no object and no multipart upload, and changes nothing", async () => {
    const model = await newModel("refused");
    const good = buildImage({ version: "1.0.0", size: 40_000 });
    assert.equal((await upload(model, good)).status, 200);
    const before = await imageKeys("refused");
    for (const bad of [new Uint8Array(3000), good.subarray(0, 30_000)]) {
      const response = await upload(model, bad);
      assert.equal(response.status, 400);
      assert.equal((await response.json()).code, "INVALID_FIRMWARE");
    }
    // Larger than FIRMWARE_MAX_BYTES (16 MiB): refused after three parts went to the bucket, which are dropped.
    const tooLarge = new Uint8Array(17 * 1024 * 1024);
    tooLarge.set(good);
    const refused = await upload(model, tooLarge);
    assert.equal(refused.status, 413);
    assert.equal((await refused.json()).code, "PAYLOAD_TOO_LARGE");
    assert.deepEqual(await imageKeys("refused"), before);
    assert.deepEqual(await tempKeys(), []);
    const { Uploads = [] } = await bucket.client.send(new ListMultipartUploadsCommand({ Bucket: bucket.bucket }));
    assert.deepEqual(Uploads.map((u) => u.Key), [], "no multipart upload left open");
    const served = await admin("GET", `/api/device-models/${model}/firmware`);
    assert.deepEqual(new Uint8Array(await served.arrayBuffer()), good);
  });

  test("a deleted version's object goes after the commit; a deleted model's objects all go", async () => {
    const model = await newModel("gone");
    const one = (await (await upload(model, buildImage({ version: "1.0.0", size: 30_000 }))).json()).version_id;
    const second = buildImage({ version: "2.0.0", size: 30_000 });
    assert.equal((await upload(model, second)).status, 200);
    assert.equal((await imageKeys("gone")).length, 2);
    assert.equal((await admin("DELETE", `/api/device-models/${model}/firmware/versions/${one}`)).status, 204);
    const left = await imageKeys("gone");
    assert.equal(left.length, 1);
    assert.ok(left[0]!.startsWith(`gone/${sha256(second)}-`));
    assert.equal((await admin("DELETE", `/api/device-models/${model}`)).status, 204);
    assert.deepEqual(await imageKeys("gone"), []);
  });
});

describe("firmware in an S3 bucket at start", () => {
  test("a dead process's temporary object is removed; a live upload's on another replica and every version's image are kept", async () => {
    const bucket = await createTestBucket();
    const first = await startTestServer({ env: bucket.env });
    let second: TestServer | null = null;
    try {
      const model = (await (await first.admin("POST", "/api/device-models", { code: "kept", name: "Kept" })).json()).id;
      const image = buildImage({ version: "1.0.0", size: 20_000 });
      const uploaded = await fetch(`${first.url}/api/device-models/${model}/firmware?rollout=immediate`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
        body: image,
      });
      assert.equal(uploaded.status, 200);
      const host = hostname().replace(/[^\w.]/g, "_");
      const dead = `.upload-${host}-999999-aa11.tmp`;
      const live = ".upload-otherhost-13-cc33.tmp";
      for (const Key of [dead, live]) await bucket.client.send(new PutObjectCommand({ Bucket: bucket.bucket, Key, Body: "x" }));

      second = await startTestServer({ env: bucket.env, databaseUrl: first.databaseUrl });
      const keys = await bucket.keys();
      assert.ok(!keys.includes(dead), "left by a dead process on this host");
      assert.ok(keys.includes(live), "may belong to a live upload on another replica");
      assert.equal(keys.filter((key) => key.startsWith("kept/")).length, 1, "the version's image");
    } finally {
      await second?.stop();
      await first.close();
      await bucket.drop();
    }
  });

  test("a bucket that does not exist stops the server at start with the reason", async () => {
    const bucket = await createTestBucket();
    const app = await createTestApp({ env: { ...bucket.env, S3_BUCKET: `${bucket.bucket}-missing` } });
    try {
      await assert.rejects(app.services.firmware.init(), /The firmware bucket "iot-test-[\w-]+-missing" cannot be reached \(it does not exist\)/);
    } finally {
      await app.close();
      await bucket.drop();
    }
  });
});
