/**
 * FIRMWARE_STORE=s3 with the bucket's server gone: a TCP proxy (test/support/database-proxy.ts, which forwards any TCP
 * service) stands between the backend and the real S3 server (S3Proxy, s3proxy/start.sh) and refuses connections or
 * cuts them mid-way. An upload or download then answers 503 UPSTREAM_UNAVAILABLE of the firmware storage with
 * Retry-After (never a 500, nor "the database"), the model keeps its firmware, no version or object is left half
 * written, an image already in memory is still served, a download cut mid-way breaks off without taking the server
 * down, and all works again once the server is back.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { ADMIN_TOKEN } from "./support/app.ts";
import { startDatabaseProxy, type DatabaseProxy } from "./support/database-proxy.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { createFleet } from "./support/fleet.ts";
import { buildImage } from "./support/firmware-image.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { createTestBucket, type TestBucket } from "./support/s3.ts";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

const MODES = [
  { name: "images served from memory", env: {} as Record<string, string> },
  { name: "FIRMWARE_CACHE_BYTES=0: every download is a ranged GET", env: { FIRMWARE_CACHE_BYTES: "0" } },
];

for (const mode of MODES) describe(`firmware in an S3 bucket that cannot be reached, ${mode.name}`, () => {
  let bucket: TestBucket;
  let proxy: DatabaseProxy;
  let server: TestServer;

  const admin = (method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string> } = {}) =>
    fetch(server.url + path, { method, body: init.body, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers }, duplex: "half" } as RequestInit);
  const upload = (model: number, body: BodyInit) =>
    admin("POST", `/api/device-models/${model}/firmware?rollout=immediate`, { body, headers: { "content-type": "application/octet-stream" } });

  async function assertStorageUnavailable(response: Response, what: string) {
    assert.equal(response.headers.get("retry-after"), "5", what);
    const body = await assertErrorEnvelope(response, 503, what);
    assert.equal(body.code, "UPSTREAM_UNAVAILABLE", what);
    assert.deepEqual(body.details, { service: "firmware storage" }, what);
    assert.match(body.error, /firmware storage/, what);
    assert.doesNotMatch(JSON.stringify(body), /database|127\.0\.0\.1|iot-test-/i, what);
  }

  /** What an admin sees of the model: its current version, its versions, and the bucket's objects. */
  async function stateOf(model: number) {
    const row = await (await admin("GET", `/api/device-models/${model}`)).json();
    const versions = await (await admin("GET", `/api/device-models/${model}/firmware/versions`)).json();
    return {
      version: row.firmware_version,
      versions: versions.versions.map((version: { version: string }) => version.version).sort(),
      keys: (await bucket.keys()).filter((key) => key.startsWith(`${row.code}/`) || key.startsWith(".upload-")).length,
    };
  }

  before(async () => {
    bucket = await createTestBucket();
    proxy = await startDatabaseProxy(bucket.env.S3_ENDPOINT!);
    server = await startTestServer({ env: { ...bucket.env, S3_ENDPOINT: proxy.url.replace(/\/$/, ""), ...mode.env } });
  });
  after(async () => {
    await proxy?.heal();
    await server?.close();
    await proxy?.close();
    await bucket?.drop();
  });

  test("the bucket refusing connections: upload and downloads answer 503, nothing changes, and all works once it is back", async () => {
    const [device] = await createFleet(server, 1, `down${mode.env.FIRMWARE_CACHE_BYTES ?? "m"}`);
    const model = (await (await admin("GET", `/api/devices/${device!.id}`)).json()).device_model_id as number;
    const first = buildImage({ version: "1.0.0", size: 40_000 });
    assert.equal((await upload(model, first as BodyInit)).status, 200);
    const before = await stateOf(model);
    assert.deepEqual([before.versions, before.keys], [["1.0.0"], 1]);
    const form = new URLSearchParams({ grant_type: "client_credentials", client_id: device!.clientId, client_secret: device!.secret });
    const deviceToken = (await (await fetch(server.services.identity.tokenUrl, { method: "POST", body: form })).json()).access_token as string;

    await proxy.refuse();
    await assertStorageUnavailable(await upload(model, buildImage({ version: "2.0.0", size: 40_000 }) as BodyInit), "upload");
    // Nothing was read before the outage, so even the memory cache has to ask the bucket.
    await assertStorageUnavailable(await admin("GET", `/api/device-models/${model}/firmware`), "admin download");
    await assertStorageUnavailable(await fetch(`${server.url}/iot/firmware`, { headers: { authorization: `Bearer ${deviceToken}`, range: "bytes=0-99" } }), "device download");

    await proxy.heal();
    assert.deepEqual(await stateOf(model), before, "the model, its versions and the bucket are as before the outage");
    const whole = await admin("GET", `/api/device-models/${model}/firmware`);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get("etag"), `"${sha256(first)}"`);
    assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), first);
    const second = buildImage({ version: "2.0.0", size: 40_000 });
    assert.equal((await upload(model, second as BodyInit)).status, 200);
    const device2 = await fetch(`${server.url}/iot/firmware`, { headers: { authorization: `Bearer ${deviceToken}` } });
    assert.equal(device2.status, 200);
    assert.deepEqual(new Uint8Array(await device2.arrayBuffer()), second);
  });

  test("the bucket gone in the middle of a multipart upload: 503, no version and no object of it", async () => {
    const model = (await (await server.admin("POST", "/api/device-models", { code: `mid${mode.env.FIRMWARE_CACHE_BYTES ?? "m"}`, name: "Mid" })).json()).id as number;
    assert.equal((await upload(model, buildImage({ version: "1.0.0", size: 30_000 }) as BodyInit)).status, 200);
    const before = await stateOf(model);

    // More than one 5 MiB part: the first part reaches the bucket, then the bucket goes away while the rest streams in.
    const image = buildImage({ version: "2.0.0", size: 7 * 1024 * 1024 });
    const cut = 5.5 * 1024 * 1024;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= image.length) return controller.close();
        if (sent >= cut && sent - 256 * 1024 < cut) {
          await new Promise((resolve) => setTimeout(resolve, 1500));
          await proxy.refuse();
        }
        const chunk = image.subarray(sent, sent + 256 * 1024);
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const response = await upload(model, body as BodyInit);
    await assertStorageUnavailable(response, "upload cut mid-way");

    await proxy.heal();
    assert.deepEqual(await stateOf(model), before, "no half-written version or object");
    const current = await admin("GET", `/api/device-models/${model}/firmware`, { headers: { range: "bytes=0-9" } });
    assert.equal(current.status, 206);
  });

  test(mode.env.FIRMWARE_CACHE_BYTES === "0" ? "an image read before the outage is read again: 503" : "an image read before the outage is served from memory meanwhile", async () => {
    const model = (await (await server.admin("POST", "/api/device-models", { code: `warm${mode.env.FIRMWARE_CACHE_BYTES ?? "m"}`, name: "Warm" })).json()).id as number;
    const image = buildImage({ version: "1.0.0", size: 30_000 });
    assert.equal((await upload(model, image as BodyInit)).status, 200);
    assert.equal((await (await admin("GET", `/api/device-models/${model}/firmware`)).arrayBuffer()).byteLength, image.length);
    await proxy.refuse();
    try {
      const during = await admin("GET", `/api/device-models/${model}/firmware`);
      if (mode.env.FIRMWARE_CACHE_BYTES === "0") await assertStorageUnavailable(during, "download by ranged GET");
      else {
        assert.equal(during.status, 200);
        assert.deepEqual(new Uint8Array(await during.arrayBuffer()), image);
      }
    } finally {
      await proxy.heal();
    }
  });

  if (mode.env.FIRMWARE_CACHE_BYTES === "0") {
    test("the bucket gone in the middle of a download: the connection ends early, the server stays up and serves again", async () => {
      const model = (await (await server.admin("POST", "/api/device-models", { code: "cutdown", name: "Cut" })).json()).id as number;
      const image = buildImage({ version: "1.0.0", size: 16 * 1024 * 1024 });
      assert.equal((await upload(model, image as BodyInit)).status, 200);
      const response = await admin("GET", `/api/device-models/${model}/firmware`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-length"), String(image.length));
      const reader = response.body!.getReader();
      let received = (await reader.read()).value!.length;
      await proxy.refuse();
      try {
        await assert.rejects(async () => {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            received += value.length;
          }
        }, "the body ends in an error, not as a complete short image");
        assert.ok(received < image.length, `${received} of ${image.length} bytes`);
      } finally {
        await proxy.heal();
      }
      const again = await admin("GET", `/api/device-models/${model}/firmware`, { headers: { range: "bytes=0-99" } });
      assert.equal(again.status, 206);
      assert.deepEqual(new Uint8Array(await again.arrayBuffer()), image.subarray(0, 100));
    });
  }
});
