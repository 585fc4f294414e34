/**
 * Two server processes on one PostgreSQL database and one S3 bucket (FIRMWARE_STORE=s3), as two replicas behind a
 * Service: an image uploaded through either is served by the other, whole and by range, with the same validators;
 * a newer upload through one replaces what the other serves, and a version deleted through one is gone on the other.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { generateFernetKey } from "../lib/secrets.ts";
import { ADMIN_TOKEN } from "./support/app.ts";
import { createTestDatabase } from "./support/database.ts";
import { buildImage } from "./support/firmware-image.ts";
import { bareEnv, type Child, runEntry } from "./support/process.ts";
import { createTestBucket, type TestBucket } from "./support/s3.ts";
import { freePort } from "./support/server.ts";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("two server processes on one database and one S3 bucket", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let bucket: TestBucket;
  let dir: string;
  const children: Child[] = [];
  const urls: string[] = [];
  const secretKey = generateFernetKey();

  async function startReplica(name: string, extra: Record<string, string>): Promise<string> {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = runEntry("server.ts", [], {
      cwd: dir,
      env: bareEnv({
        DATABASE_URL: database.url,
        MIGRATE_ON_START: "true",
        HOST: "127.0.0.1",
        PORT: String(port),
        BASEURL: url,
        ADMIN_API_TOKEN: ADMIN_TOKEN,
        SECRET_ENCRYPTION_KEY: secretKey,
        DATA_DIR: join(dir, name),
        EMBEDDED_MQTT: "false",
        ROTATION_SCHEDULER: "external",
        LOG_LEVEL: "info",
        LOG_FORMAT: "json",
        ...bucket.env,
        ...extra,
      }),
    });
    children.push(child);
    await child.waitForOutput(/listening/);
    return url;
  }

  const admin = (url: string, method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string> } = {}) =>
    fetch(url + path, { method, body: init.body, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers } });
  const upload = (url: string, model: number, bytes: Uint8Array) =>
    admin(url, "POST", `/api/device-models/${model}/firmware?rollout=immediate`, { body: bytes as BodyInit, headers: { "content-type": "application/octet-stream" } });

  before(async () => {
    database = await createTestDatabase();
    bucket = await createTestBucket();
    dir = mkdtempSync(join(tmpdir(), "iot-replicas-"));
    // One serves images from memory, the other by ranged GETs: both are what a replica may do.
    urls.push(await startReplica("a", {}));
    urls.push(await startReplica("b", { FIRMWARE_CACHE_BYTES: "0" }));
  });
  after(async () => {
    for (const child of children) {
      child.process.kill("SIGTERM");
      await child.exited(30_000).catch(() => child.kill());
    }
    await database?.drop();
    await bucket?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("uploaded through one, downloaded through the other, whole and by range; each sees the other's newer upload and deletion", async () => {
    const [a, b] = urls as [string, string];
    const model = (await (await admin(a, "POST", "/api/device-models", { body: JSON.stringify({ code: "shared", name: "Shared" }), headers: { "content-type": "application/json" } })).json()).id;
    const first = buildImage({ version: "1.0.0", size: 300_000 });
    const firstUpload = await upload(a, model, first);
    assert.equal(firstUpload.status, 200, await firstUpload.clone().text());
    const firstId = (await firstUpload.json()).version_id;

    for (const url of [b, a]) {
      const whole = await admin(url, "GET", `/api/device-models/${model}/firmware`);
      assert.equal(whole.status, 200);
      assert.equal(whole.headers.get("etag"), `"${sha256(first)}"`);
      assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), first);
      const part = await admin(url, "GET", `/api/device-models/${model}/firmware`, { headers: { range: "bytes=1000-65535", "if-range": `"${sha256(first)}"` } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get("content-range"), `bytes 1000-65535/${first.length}`);
      assert.deepEqual(new Uint8Array(await part.arrayBuffer()), first.subarray(1000, 65536));
      const unchanged = await admin(url, "GET", `/api/device-models/${model}/firmware`, { headers: { "if-none-match": `"${sha256(first)}"` } });
      assert.equal(unchanged.status, 304);
    }

    // A newer image through the other replica: the first one, which holds the older image in memory, serves the new one.
    const second = buildImage({ version: "2.0.0", size: 200_000 });
    assert.equal((await upload(b, model, second)).status, 200);
    for (const url of [a, b]) {
      const whole = await admin(url, "GET", `/api/device-models/${model}/firmware`);
      assert.equal(whole.headers.get("etag"), `"${sha256(second)}"`);
      assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), second);
      const old = await admin(url, "GET", `/api/device-models/${model}/firmware/versions/${firstId}/image`, { headers: { range: "bytes=0-99" } });
      assert.equal(old.status, 206);
      assert.deepEqual(new Uint8Array(await old.arrayBuffer()), first.subarray(0, 100));
    }

    // Deleted through one: its object is gone from the bucket, and the other no longer serves it.
    assert.equal((await admin(b, "DELETE", `/api/device-models/${model}/firmware/versions/${firstId}`)).status, 204);
    assert.deepEqual((await bucket.keys()).filter((key) => key.startsWith("shared/")).length, 1);
    const gone = await admin(a, "GET", `/api/device-models/${model}/firmware/versions/${firstId}/image`);
    assert.equal(gone.status, 404);
    assert.equal((await gone.json()).code, "FIRMWARE_VERSION_NOT_FOUND");
  });
});
