import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import mqtt from "mqtt";
import { deviceModels } from "../db/schema.ts";
import { createLogger } from "../lib/logger.ts";
import { ADMIN_TOKEN } from "./support/app.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { buildImage, readVector, signV2 } from "./support/firmware-image.ts";
import { clientCredentialsToken } from "./support/keycloak.ts";
import { MQTT_TEST_URL, startTestServer, type TestServer } from "./support/server.ts";

const LIMIT = 600_000;
const blink = readVector("esp_idf_blink_esp32s2.bin");
const bootloader = readVector("bootloader_esp32.bin");
const BLINK_VERSION = "qa-test-v5.0-20220830-4-g4532e6";
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const bytesOf = async (response: Response) => new Uint8Array(await response.arrayBuffer());

type Device = { id: number; key: string; client_id: string };

/** The same promises whether images are served from the shared copy in memory or read from disk per download. */
const MODES = [
  { name: "images served from memory (default FIRMWARE_CACHE_BYTES)", env: {} as Record<string, string> },
  { name: "FIRMWARE_CACHE_BYTES=0: every download reads the file", env: { FIRMWARE_CACHE_BYTES: "0" } },
];

for (const mode of MODES) describe(`firmware, ${mode.name}`, () => {
  let server: TestServer;
  const logLines: string[] = [];
  let assetsDir: string;
  let modelA: number;
  let modelB: number;
  let devicesA: Device[];
  let deviceB: Device;
  const tokens = new Map<string, string>();

  const admin = (method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string> } = {}) =>
    fetch(server.url + path, { method, body: init.body, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers }, duplex: "half" } as RequestInit);
  const upload = (model: number, bytes: Uint8Array, type = "application/octet-stream") =>
    admin("POST", `/api/device-models/${model}/firmware?rollout=immediate`, { body: bytes as BodyInit, headers: { "content-type": type } });
  const version = async (model: number) => (await (await admin("GET", `/api/device-models/${model}`)).json()).firmware_version;
  const filesIn = (dir = assetsDir): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesIn(join(dir, e.name)).map((f) => `${e.name}/${f}`) : [e.name]));
  const tempFiles = () => filesIn().filter((f) => f.endsWith(".tmp"));

  async function deviceToken(device: Device): Promise<string> {
    const cached = tokens.get(device.client_id);
    if (cached) return cached;
    const secret = await server.services.identity.getSecret(device.client_id);
    const result = await clientCredentialsToken(server.services.identity.tokenUrl, device.client_id, secret);
    assert.ok(result.ok, `token request: ${result.status}`);
    const token = result.accessToken!;
    tokens.set(device.client_id, token);
    return token;
  }
  const deviceGet = async (device: Device, headers: Record<string, string> = {}, path = "/iot/firmware", method = "GET") =>
    fetch(server.url + path, { method, headers: { authorization: `Bearer ${await deviceToken(device)}`, ...headers } });

  before(async () => {
    server = await startTestServer({
      env: { FIRMWARE_MAX_BYTES: String(LIMIT), MQTT_URL: MQTT_TEST_URL, ...mode.env },
      overrides: { logger: createLogger("warn", {}, (line) => logLines.push(line)) },
    });
    assetsDir = server.services.config.assetsDir;
    const model = async (code: string) => (await (await server.admin("POST", "/api/device-models", { code, name: code })).json()).id as number;
    modelA = await model("fw_a");
    modelB = await model("fw_b");
    const device = async (model: number) => (await (await server.admin("POST", "/api/devices", { device_model_id: model, config: "{}" })).json()) as Device;
    devicesA = [await device(modelA), await device(modelA)];
    deviceB = await device(modelB);
    assert.equal(server.services.notifier.state(), "connected", "the backend is connected to Mosquitto");
  });
  after(() => server.close());

  test("a model without firmware: 404 in the envelope for admins and devices", async () => {
    const adminResponse = await admin("GET", `/api/device-models/${modelA}/firmware`);
    assert.equal((await assertErrorEnvelope(adminResponse, 404, "admin download")).code, "FIRMWARE_NOT_FOUND");
    const deviceResponse = await deviceGet(devicesA[0]!);
    const body = await assertErrorEnvelope(deviceResponse, 404, "device download");
    assert.equal(body.code, "FIRMWARE_NOT_FOUND");
    assert.match(body.error, /fw_a.*no firmware/);
  });

  test("raw upload: the blink image is stored, recorded, and every device of the model is notified on MQTT", async () => {
    const subscriber = await mqtt.connectAsync(MQTT_TEST_URL, { clientId: `fw-test-${randomBytes(4).toString("hex")}` });
    const received = new Map<string, unknown>();
    subscriber.on("message", (topic, payload) => received.set(topic, JSON.parse(payload.toString())));
    const topics = [...devicesA, deviceB].map((d) => `iotsupport/${d.client_id}/firmware`);
    await subscriber.subscribeAsync(topics, { qos: 1 });
    try {
      const response = await upload(modelA, blink);
      assert.equal(response.status, 200, await response.clone().text());
      const answer = await response.json();
      assert.deepEqual(answer, { id: modelA, code: "fw_a", firmware_version: BLINK_VERSION, version_id: answer.version_id, rollout: "immediate", rollout_id: null });
      assert.ok(Number.isInteger(answer.version_id));
      assert.equal(await version(modelA), BLINK_VERSION);

      const [row] = await server.services.database.db.select().from(deviceModels).where(eq(deviceModels.id, modelA));
      assert.equal(row!.firmwareProjectName, "blink");
      assert.equal(row!.firmwareIdfVersion, "v5.0-beta1-427-g4532e6e0b2-dirt");
      assert.equal(row!.firmwareChip, "ESP32-S2");
      assert.equal(row!.firmwareSize, blink.length);
      assert.equal(row!.firmwareSha256, sha256(blink));
      assert.ok(row!.firmwareUploadedAt);
      assert.deepEqual(filesIn(), [row!.firmwareFile], "exactly the committed file is on disk");

      for (let i = 0; i < 50 && received.size < devicesA.length; i++) await new Promise((r) => setTimeout(r, 100));
      for (const device of devicesA) {
        assert.deepEqual(received.get(`iotsupport/${device.client_id}/firmware`), { client_id: device.client_id, firmware_version: BLINK_VERSION });
      }
      assert.equal(received.has(`iotsupport/${deviceB.client_id}/firmware`), false, "devices of other models are not notified");
    } finally {
      await subscriber.endAsync();
    }
  });

  test("multipart upload with the field `file` (other fields ignored); without it a 400", async () => {
    const v2 = buildImage({ version: "multipart-v2", size: 300_000 });
    const form = new FormData();
    form.append("note", "hello");
    form.append("file", new Blob([v2]), "app.bin");
    const response = await admin("POST", `/api/device-models/${modelB}/firmware?rollout=immediate`, { body: form });
    assert.equal(response.status, 200, await response.clone().text());
    assert.equal((await response.json()).firmware_version, "multipart-v2");
    assert.deepEqual(await bytesOf(await deviceGet(deviceB)), v2);

    const wrongField = new FormData();
    wrongField.append("image", new Blob([blink]), "app.bin");
    const missing = await assertErrorEnvelope(await admin("POST", `/api/device-models/${modelB}/firmware?rollout=immediate`, { body: wrongField }), 400, "no file field");
    assert.equal(missing.code, "VALIDATION_FAILED");
    assert.match(missing.error, /"file"/);

    const broken = await admin("POST", `/api/device-models/${modelB}/firmware?rollout=immediate`, {
      body: "--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc",
      headers: { "content-type": "multipart/form-data; boundary=xyz" },
    });
    assert.equal((await assertErrorEnvelope(broken, 400, "malformed multipart")).code, "MALFORMED_MULTIPART");
    assert.equal(await version(modelB), "multipart-v2");
    assert.deepEqual(tempFiles(), []);
  });

  test("rejected images: 400 INVALID_FIRMWARE saying what is wrong; version, files and downloads unchanged", async () => {
    const before = filesIn();
    const flipped = blink.slice();
    flipped[100_000]! ^= 0x01;
    const cases: [string, Uint8Array, RegExp][] = [
      ["bootloader", bootloader, /not an ESP32 application image: no app descriptor/],
      ["truncated header", blink.subarray(0, 100), /truncated/],
      ["truncated body", blink.subarray(0, blink.length - 1), /truncated: 182367 bytes arrived/],
      ["flipped byte", flipped, /SHA-256 does not match|checksum does not match/],
      ["empty body", new Uint8Array(0), /upload is empty/],
      ["random bytes", new Uint8Array(randomBytes(50_000)), /not an ESP32 application image/],
      ["extra data", new Uint8Array([...blink, 0, 0, 0, 0]), /extra data after its end/],
    ];
    for (const [label, bytes, message] of cases) {
      const body = await assertErrorEnvelope(await upload(modelA, bytes), 400, label);
      assert.equal(body.code, "INVALID_FIRMWARE", label);
      assert.match(body.error, message, label);
    }
    assert.equal(await version(modelA), BLINK_VERSION);
    assert.deepEqual(filesIn(), before, "no file added or removed");
    assert.deepEqual(await bytesOf(await deviceGet(devicesA[0]!)), blink);
  });

  test("a JSON body is 415; a body over FIRMWARE_MAX_BYTES is 413 (declared or streamed), leaving the old firmware", async () => {
    const before = filesIn();
    assert.equal((await assertErrorEnvelope(await upload(modelA, blink, "application/json"), 415, "json")).code, "UNSUPPORTED_MEDIA_TYPE");

    const big = buildImage({ version: "too-big", size: LIMIT + 50_000 });
    assert.equal((await assertErrorEnvelope(await upload(modelA, big), 413, "declared length")).code, "PAYLOAD_TOO_LARGE");

    // Chunked, no Content-Length: the limit is enforced while streaming, after bytes were already written.
    const streamed = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < big.length; at += 64 * 1024) controller.enqueue(big.slice(at, at + 64 * 1024));
        controller.close();
      },
    });
    assert.equal((await assertErrorEnvelope(await upload(modelA, streamed as never), 413, "streamed")).code, "PAYLOAD_TOO_LARGE");

    const form = new FormData();
    form.append("file", new Blob([big]), "app.bin");
    const encoded = new Response(form); // streamed: no Content-Length
    const multipart = await admin("POST", `/api/device-models/${modelA}/firmware?rollout=immediate`, {
      body: encoded.body as never,
      headers: { "content-type": encoded.headers.get("content-type")! },
    });
    assert.equal((await assertErrorEnvelope(multipart, 413, "multipart")).code, "PAYLOAD_TOO_LARGE");

    assert.equal(await version(modelA), BLINK_VERSION);
    assert.deepEqual(filesIn(), before);
    assert.deepEqual(await bytesOf(await deviceGet(devicesA[0]!)), blink);
  });

  test("curl --data-binary's default content type with a bearer token is the raw image; text is still 415", async () => {
    const model = (await (await server.admin("POST", "/api/device-models", { code: "fw_curl", name: "fw_curl" })).json()).id as number;
    const curlImage = buildImage({ version: "curl-1.0", size: 8192 });
    const stored = await upload(model, curlImage, "application/x-www-form-urlencoded");
    assert.equal(stored.status, 200);
    assert.equal(await version(model), "curl-1.0");
    assert.deepEqual(await bytesOf(await admin("GET", `/api/device-models/${model}/firmware`)), curlImage);
    assert.equal((await assertErrorEnvelope(await upload(model, curlImage, "text/plain"), 415, "text")).code, "UNSUPPORTED_MEDIA_TYPE");
    assert.equal((await server.admin("DELETE", `/api/device-models/${model}`)).status, 204);
  });

  test("a rejected, oversized or broken-off upload notifies no device; a stored one does", async () => {
    const subscriber = await mqtt.connectAsync(MQTT_TEST_URL, { clientId: `fw-none-${randomBytes(4).toString("hex")}` });
    const received: string[] = [];
    // Only this model's devices count: other tests on the same broker may notify devices of their own.
    const ours = new Set(devicesA.map((d) => d.client_id));
    subscriber.on("message", (topic, payload) => {
      if (ours.has(JSON.parse(payload.toString()).client_id)) received.push(topic);
    });
    await subscriber.subscribeAsync(["iotsupport/+/firmware", "iotsupport/updates/firmware"], { qos: 1 });
    try {
      assert.equal((await upload(modelA, bootloader)).status, 400);
      assert.equal((await upload(modelA, buildImage({ version: "too-big", size: LIMIT + 50_000 }))).status, 413);
      await new Promise<void>((resolve) => {
        const req = httpRequest(`${server.url}/api/device-models/${modelA}/firmware?rollout=immediate`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream", "content-length": String(blink.length) },
        });
        req.on("error", () => resolve());
        req.write(blink.subarray(0, 50_000), () => setTimeout(() => (req.destroy(), resolve()), 100));
      });
      await new Promise((r) => setTimeout(r, 700));
      assert.deepEqual(received, [], "no notice for an upload that was not stored");

      assert.equal((await upload(modelA, blink)).status, 200);
      for (let i = 0; i < 50 && received.length < devicesA.length; i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual([...new Set(received)].sort(), devicesA.map((d) => `iotsupport/${d.client_id}/firmware`).sort(), "the subscriber does see a stored upload's notices");
    } finally {
      await subscriber.endAsync();
    }
  });

  test("a model deleted while its image streams in: 404, and no file of it is left", async () => {
    const id = (await (await server.admin("POST", "/api/device-models", { code: "fw_vanish", name: "Vanish" })).json()).id;
    const image = buildImage({ version: "orphan", size: 400_000 });
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${server.url}/api/device-models/${id}/firmware?rollout=immediate`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream", "content-length": String(image.length) },
      }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (chunk) => (body += chunk)).on("end", () => resolve({ status: res.statusCode!, body }));
      });
      req.on("error", reject);
      req.write(image.subarray(0, 200_000), async () => {
        assert.equal((await admin("DELETE", `/api/device-models/${id}`)).status, 204);
        req.end(image.subarray(200_000));
      });
    });
    const { status, body } = await response;
    assert.equal(status, 404, body);
    assert.equal(JSON.parse(body).code, "DEVICE_MODEL_NOT_FOUND");
    assert.deepEqual(filesIn().filter((f) => f.startsWith("fw_vanish/") || f.endsWith(".tmp")), []);
  });

  test("an upload that breaks off mid-stream leaves the old firmware and no temporary file", async () => {
    const image = buildImage({ version: "never-arrives", size: 500_000 });
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${server.url}/api/device-models/${modelA}/firmware?rollout=immediate`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream", "content-length": String(image.length) },
      });
      req.on("error", () => resolve());
      req.write(image.subarray(0, 200_000), () => setTimeout(() => (req.destroy(), resolve()), 200));
    });
    for (let i = 0; i < 20 && tempFiles().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(tempFiles(), []);
    assert.equal(await version(modelA), BLINK_VERSION);
    assert.deepEqual(await bytesOf(await deviceGet(devicesA[0]!)), blink);
  });

  test("download headers: length, strong ETag (content hash), Last-Modified, Accept-Ranges, attachment name", async () => {
    const response = await admin("GET", `/api/device-models/${modelA}/firmware`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-length"), String(blink.length));
    assert.equal(response.headers.get("etag"), `"${sha256(blink)}"`);
    assert.equal(response.headers.get("accept-ranges"), "bytes");
    assert.equal(response.headers.get("content-type"), "application/octet-stream");
    assert.equal(response.headers.get("content-disposition"), 'attachment; filename="firmware-fw_a.bin"');
    assert.ok(Date.parse(response.headers.get("last-modified")!) > Date.now() - 600_000);
    assert.deepEqual(await bytesOf(response), blink);

    for (const path of ["/iot/firmware", "/api/iot/firmware"]) {
      const device = await deviceGet(devicesA[1]!, {}, path);
      assert.equal(device.status, 200, path);
      assert.equal(device.headers.get("etag"), `"${sha256(blink)}"`);
      assert.deepEqual(await bytesOf(device), blink, path);
    }
  });

  test("Range: byte-exact 206 slices; 416 with Content-Range */size; several ranges get the full 200", async () => {
    const size = blink.length;
    const slices: [string, number, number][] = [
      ["bytes=0-99", 0, 99],
      ["bytes=1000-1999", 1000, 1999],
      ["bytes=-100", size - 100, size - 1],
      ["bytes=100000-", 100000, size - 1],
      ["bytes=180000-999999", 180000, size - 1],
    ];
    for (const [range, start, end] of slices) {
      const response = await deviceGet(devicesA[0]!, { range });
      assert.equal(response.status, 206, range);
      assert.equal(response.headers.get("content-range"), `bytes ${start}-${end}/${size}`, range);
      assert.equal(response.headers.get("content-length"), String(end - start + 1), range);
      assert.deepEqual(await bytesOf(response), blink.subarray(start, end + 1), range);
    }
    for (const range of [`bytes=${size}-`, "bytes=999999-1000000", "bytes=-0"]) {
      const response = await deviceGet(devicesA[0]!, { range });
      const body = await assertErrorEnvelope(response, 416, range);
      assert.equal(body.code, "RANGE_NOT_SATISFIABLE");
      assert.equal(response.headers.get("content-range"), `bytes */${size}`);
    }
    const multi = await deviceGet(devicesA[0]!, { range: "bytes=0-9,20-29" });
    assert.equal(multi.status, 200);
    assert.deepEqual(await bytesOf(multi), blink);
  });

  test("If-None-Match → 304; If-Range honoured (ETag or date match → 206, mismatch → full 200)", async () => {
    const etag = `"${sha256(blink)}"`;
    const full = await deviceGet(devicesA[0]!);
    const lastModified = full.headers.get("last-modified")!;
    await full.body?.cancel();

    const notModified = await deviceGet(devicesA[0]!, { "if-none-match": etag });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.get("etag"), etag);
    assert.equal((await notModified.arrayBuffer()).byteLength, 0);
    assert.equal((await deviceGet(devicesA[0]!, { "if-none-match": `"other", W/${etag}` })).status, 304);
    const changed = await deviceGet(devicesA[0]!, { "if-none-match": '"something-else"' });
    assert.equal(changed.status, 200);
    await changed.body?.cancel();

    const matching = await deviceGet(devicesA[0]!, { range: "bytes=10-19", "if-range": etag });
    assert.equal(matching.status, 206);
    assert.deepEqual(await bytesOf(matching), blink.subarray(10, 20));
    const byDate = await deviceGet(devicesA[0]!, { range: "bytes=10-19", "if-range": lastModified });
    assert.equal(byDate.status, 206);
    await byDate.body?.cancel();
    const stale = await deviceGet(devicesA[0]!, { range: "bytes=10-19", "if-range": '"an-older-image"' });
    assert.equal(stale.status, 200);
    assert.deepEqual(await bytesOf(stale), blink);
  });

  test("HEAD: the same headers as GET, no body", async () => {
    for (const [path, init] of [
      [`/api/device-models/${modelA}/firmware`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }],
      ["/iot/firmware", { headers: { authorization: `Bearer ${await deviceToken(devicesA[0]!)}` } }],
    ] as const) {
      const head = await new Promise<{ status: number; headers: Record<string, unknown>; body: number }>((resolve, reject) => {
        const req = httpRequest(server.url + path, { method: "HEAD", ...init }, (res) => {
          let body = 0;
          res.on("data", (c: Buffer) => (body += c.length));
          res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        });
        req.on("error", reject);
        req.end();
      });
      assert.equal(head.status, 200, path);
      assert.equal(head.headers["content-length"], String(blink.length), path);
      assert.equal(head.headers["etag"], `"${sha256(blink)}"`, path);
      assert.equal(head.headers["accept-ranges"], "bytes", path);
      assert.ok(head.headers["last-modified"], path);
      assert.equal(head.body, 0, path);
      const ranged = await fetch(server.url + path, { method: "HEAD", headers: { ...init.headers, range: "bytes=0-9" } });
      assert.equal(ranged.status, 206);
      assert.equal(ranged.headers.get("content-length"), "10");
    }
  });

  test("an interrupted download resumes with Range: the parts concatenate to the file", async () => {
    const token = await deviceToken(devicesA[0]!);
    const firstPart = await new Promise<Buffer>((resolve, reject) => {
      const req = httpRequest(`${server.url}/iot/firmware`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
        const chunks: Buffer[] = [];
        let got = 0;
        res.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          got += chunk.length;
          if (got >= blink.length / 2) {
            req.destroy(); // the connection drops half-way
            resolve(Buffer.concat(chunks));
          }
        });
      });
      req.on("error", (error) => (error.message.includes("socket hang up") || error.message.includes("aborted") ? undefined : reject(error)));
      req.end();
    });
    assert.ok(firstPart.length >= blink.length / 2 && firstPart.length < blink.length);
    const rest = await deviceGet(devicesA[0]!, { range: `bytes=${firstPart.length}-`, "if-range": `"${sha256(blink)}"` });
    assert.equal(rest.status, 206);
    assert.deepEqual(new Uint8Array(Buffer.concat([firstPart, await bytesOf(rest)])), blink);
  });

  test("no firmware file stays open after HEAD, 304, 416 and downloads dropped by the client", async () => {
    const openFirmwareFiles = () =>
      readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(assetsDir);
        } catch {
          return false;
        }
      }).length;
    const token = await deviceToken(devicesA[0]!);
    const dropped = () =>
      new Promise<void>((resolve) => {
        const req = httpRequest(`${server.url}/iot/firmware`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
          res.once("data", () => req.destroy());
        });
        req.on("close", () => resolve());
        req.on("error", () => {});
        req.end();
      });
    await Promise.all([
      ...Array.from({ length: 10 }, dropped),
      ...Array.from({ length: 10 }, () => fetch(`${server.url}/iot/firmware`, { method: "HEAD", headers: { authorization: `Bearer ${token}` } })),
      ...Array.from({ length: 10 }, () => deviceGet(devicesA[0]!, { "if-none-match": `"${sha256(blink)}"` })),
      ...Array.from({ length: 10 }, async () => (await deviceGet(devicesA[0]!, { range: "bytes=999999-" })).text()),
    ]);
    for (let i = 0; i < 40 && openFirmwareFiles() > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(openFirmwareFiles(), 0);
  });

  test("devices get only their own model's firmware; a device token cannot use the admin download", async () => {
    const own = await bytesOf(await deviceGet(deviceB));
    assert.equal((await deviceGet(deviceB)).headers.get("etag") === `"${sha256(blink)}"`, false);
    assert.notDeepEqual(own, blink, "device B gets model B's image, not model A's");
    const viaAdmin = await fetch(`${server.url}/api/device-models/${modelA}/firmware`, { headers: { authorization: `Bearer ${await deviceToken(deviceB)}` } });
    await assertErrorEnvelope(viaAdmin, [401, 403], "device token on the admin route");
    const noToken = await fetch(`${server.url}/iot/firmware`);
    await assertErrorEnvelope(noToken, 401, "no token");
  });

  test("an upload while devices download: each download is the old image or the new one, whole", async () => {
    const oldImage = buildImage({ version: "concurrent-old", size: 500_000 });
    const newImage = buildImage({ version: "concurrent-new", size: 500_000 });
    assert.equal((await upload(modelA, oldImage)).status, 200);
    const token = await deviceToken(devicesA[0]!);

    // Downloads that have begun (response headers and a first chunk in hand) before the upload commits.
    const started = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const response = await fetch(`${server.url}/iot/firmware`, { headers: { authorization: `Bearer ${token}` } });
        const reader = response.body!.getReader();
        const first = await reader.read();
        return { reader, chunks: [first.value!] };
      }),
    );
    const during = Array.from({ length: 20 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, i * 5));
      return bytesOf(await fetch(`${server.url}/iot/firmware`, { headers: { authorization: `Bearer ${token}` } }));
    });
    const uploaded = await upload(modelA, newImage);
    assert.equal(uploaded.status, 200);
    const finish = async ({ reader, chunks }: (typeof started)[number]) => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return new Uint8Array(Buffer.concat(chunks));
        chunks.push(value);
      }
    };
    const early = await Promise.all(started.map(finish));
    for (const bytes of early) assert.equal(sha256(bytes), sha256(oldImage), "a download begun before the commit completes with the old image");
    const oldHash = sha256(oldImage);
    const newHash = sha256(newImage);
    for (const bytes of await Promise.all(during)) assert.ok([oldHash, newHash].includes(sha256(bytes)), "old or new, never a mix");
    assert.equal(sha256(await bytesOf(await deviceGet(devicesA[0]!))), newHash);
    const versions = (await (await admin("GET", `/api/device-models/${modelA}/firmware/versions`)).json()).count;
    assert.equal(filesIn().filter((f) => f.startsWith("fw_a/")).length, versions, "one file per version: the previous image stays as its version");
  });

  test("deleting a model removes its firmware files", async () => {
    const id = (await (await server.admin("POST", "/api/device-models", { code: "fw_gone", name: "Gone" })).json()).id;
    assert.equal((await upload(id, blink)).status, 200);
    assert.ok(existsSync(join(assetsDir, "fw_gone")));
    assert.equal((await admin("DELETE", `/api/device-models/${id}`)).status, 204);
    assert.equal(existsSync(join(assetsDir, "fw_gone")), false);
  });

  test("memory: one copy per served image however many download it (none without a cache, none for a 304), released when replaced", async () => {
    const cached = async () => Number(/^iot_firmware_cache_bytes (\d+)$/m.exec(await (await fetch(`${server.url}/metrics`)).text())![1]);
    const image = buildImage({ version: "memory-1", size: 300_000 });
    assert.equal((await upload(modelB, image)).status, 200);
    const before = await cached();
    for (let i = 0; i < 5; i++) assert.equal((await deviceGet(deviceB, { "if-none-match": `"${sha256(image)}"` })).status, 304);
    assert.equal(await cached(), before, "a 304 is answered from the model row: the image is not read");
    const downloads = await Promise.all(Array.from({ length: 20 }, async () => bytesOf(await deviceGet(deviceB))));
    for (const bytes of downloads) assert.equal(sha256(bytes), sha256(image));
    const expected = mode.env.FIRMWARE_CACHE_BYTES === "0" ? 0 : image.length;
    assert.equal((await cached()) - before, expected, "20 concurrent downloads hold the image once");

    const replacement = buildImage({ version: "memory-2", size: 250_000 });
    assert.equal((await upload(modelB, replacement)).status, 200);
    assert.equal(await cached(), before, "the replaced image is no longer held");
    assert.equal(sha256(await bytesOf(await deviceGet(deviceB))), sha256(replacement));
  });

  test("an image signed for secure boot is stored and served whole, signature sector included", async () => {
    const signed = signV2(buildImage({ version: "signed-1", size: 150_000 }));
    assert.equal((await upload(modelB, signed)).status, 200);
    assert.equal(await version(modelB), "signed-1");
    const download = await deviceGet(deviceB);
    assert.equal(download.headers.get("etag"), `"${sha256(signed)}"`);
    assert.deepEqual(await bytesOf(download), signed);
  });

  test("a stored file changed or removed behind the server's back: 500 FIRMWARE_FILE_DAMAGED, never served under its ETag", async () => {
    const image = buildImage({ version: "tampered", size: 200_000 });
    assert.equal((await upload(modelB, image)).status, 200);
    const [row] = await server.services.database.db.select().from(deviceModels).where(eq(deviceModels.id, modelB));
    writeFileSync(join(assetsDir, row!.firmwareFile!), image.subarray(0, 100_000));
    for (const response of [await deviceGet(deviceB), await admin("GET", `/api/device-models/${modelB}/firmware`)]) {
      assert.equal(response.status, 500);
      const body = await response.json();
      assert.equal(body.code, "FIRMWARE_FILE_DAMAGED");
      assert.equal(body.error, 'The stored firmware of device model "fw_b" is missing or damaged; upload it again.');
      assert.equal(body.correlationId, response.headers.get("x-request-id"));
    }
    assert.ok(logLines.some((line) => line.includes("it has 100000 bytes; its row records 200000")), "the reason is logged");

    rmSync(join(assetsDir, row!.firmwareFile!));
    assert.equal((await deviceGet(deviceB)).status, 500, "a missing file: the same answer");
    assert.ok(logLines.some((line) => line.includes("ENOENT")), "the reason is logged");
    assert.equal((await upload(modelB, image)).status, 200, "a new upload repairs it");
    assert.equal(sha256(await bytesOf(await deviceGet(deviceB))), sha256(image));
  });
});

describe("firmware storage at start", () => {
  test("stale temporary files and orphaned images are removed; another live upload's temporary file is kept", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "iot-fw-start-"));
    const assets = join(dataDir, "firmware");
    mkdirSync(join(assets, "ghost"), { recursive: true });
    const host = hostname().replace(/[^\w.]/g, "_");
    const hourAgo = new Date(Date.now() - 3600_000);
    const files = {
      deadProcess: `.upload-${host}-999999-aa11.tmp`,
      oldOtherHost: ".upload-otherhost-12-bb22.tmp",
      freshOtherHost: ".upload-otherhost-13-cc33.tmp",
      orphan: "ghost/0000-dead.bin",
    };
    for (const name of Object.values(files)) writeFileSync(join(assets, name), "x");
    utimesSync(join(assets, files.oldOtherHost), hourAgo, hourAgo);
    utimesSync(join(assets, files.orphan), hourAgo, hourAgo);

    const server = await startTestServer({ env: { ASSETS_DIR: assets, MQTT_URL: "" } });
    try {
      assert.equal(existsSync(join(assets, files.deadProcess)), false, "left by a dead process on this host");
      assert.equal(existsSync(join(assets, files.oldOtherHost)), false, "untouched for an hour");
      assert.equal(existsSync(join(assets, files.freshOtherHost)), true, "may belong to a live upload on another replica");
      assert.equal(existsSync(join(assets, files.orphan)), false, "an image no model points at");
      assert.equal(existsSync(join(assets, "ghost")), false, "the directory of a model that does not exist");
    } finally {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("with the broker down an upload still succeeds", async () => {
    const server = await startTestServer({ env: { MQTT_URL: "mqtt://127.0.0.1:1", MQTT_PUBLISH_TIMEOUT_MS: "500" } });
    try {
      const id = (await (await server.admin("POST", "/api/device-models", { code: "offline", name: "Offline" })).json()).id;
      await server.admin("POST", "/api/devices", { device_model_id: id, config: "{}" });
      const response = await fetch(`${server.url}/api/device-models/${id}/firmware?rollout=immediate`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
        body: blink,
      });
      assert.equal(response.status, 200);
      assert.equal((await response.json()).firmware_version, BLINK_VERSION);
    } finally {
      await server.close();
    }
  });
});
