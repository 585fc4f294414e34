/**
 * Two server processes on one PostgreSQL database and one S3 bucket (FIRMWARE_STORE=s3), as two replicas behind a
 * Service: an image uploaded through either is served by the other, whole and by range, with the same validators;
 * a newer upload through one replaces what the other serves, and a version deleted through one is gone on the other.
 * Devices polling through both keep being served while one replica restarts.
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
import { bareEnv, type Child, runEntry, serverProcessEnv } from "./support/process.ts";
import { createTestBucket, type TestBucket } from "./support/s3.ts";
import { freePort, MQTT_TEST_URL } from "./support/server.ts";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("two server processes on one database and one S3 bucket", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let bucket: TestBucket;
  let dir: string;
  const children: Child[] = [];
  const urls: string[] = [];
  const secretKey = generateFernetKey();
  // The public URL in front of the replicas: the built-in provider's token issuer, the same for all of them.
  const PUBLIC_URL = "http://iot.replicas.test";

  async function startReplica(name: string, extra: Record<string, string>): Promise<string> {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = runEntry("server.ts", [], {
      cwd: dir,
      env: bareEnv({
        ...serverProcessEnv({ databaseUrl: database.url, port, baseUrl: PUBLIC_URL, secretKey, dataDir: join(dir, name) }),
        MIGRATE_ON_START: "true",
        // One broker for all replicas, as in production; provisioning needs it and the Wi-Fi settings.
        MQTT_URL: MQTT_TEST_URL,
        WIFI_SSID: "replicas",
        WIFI_PASSWORD: "replicas-password",
        ROTATION_SCHEDULER: "external",
        LOG_LEVEL: "info",
        LOG_FORMAT: "json",
        ...bucket.env,
        ...extra,
      }),
    });
    children.push(child);
    await child.waitForOutput(/listening/);
    replicaProcess.set(url, child);
    return url;
  }
  const replicaProcess = new Map<string, Child>();

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

  test("devices polling through both replicas are served throughout while one of them restarts", async () => {
    const [a, b] = urls as [string, string];
    const json = { "content-type": "application/json" };
    const model = (await (await admin(a, "POST", "/api/device-models", { body: JSON.stringify({ code: "polled", name: "Polled" }), headers: json })).json()).id;
    const image = buildImage({ version: "3.0.0", size: 150_000 });
    assert.equal((await upload(b, model, image)).status, 200);
    const devices = await Promise.all(
      [0, 1, 2, 3].map(async (n) => {
        const created = await (await admin(n % 2 ? a : b, "POST", "/api/devices", { body: JSON.stringify({ device_model_id: model, config: "{}" }), headers: json })).json();
        const provisioning = await admin(n % 2 ? b : a, "GET", `/api/devices/${created.id}/provisioning`);
        assert.equal(provisioning.status, 200, await provisioning.clone().text());
        const pkg = await provisioning.json();
        const form = new URLSearchParams({ grant_type: "client_credentials", client_id: pkg.client_id, client_secret: pkg.client_secret });
        const issued = await fetch(`${n % 2 ? a : b}/oauth2/token`, { method: "POST", body: form });
        assert.equal(issued.status, 200, await issued.clone().text());
        return { token: (await issued.json()).access_token as string };
      }),
    );

    // The replicas a load balancer would send to: a stopping one leaves the list as its readiness fails.
    const live = new Set([a, b]);
    const served = new Map<string, number>();
    const failures: string[] = [];
    let retried = 0;
    let polls = 0;
    let polling = true;
    /** One device request as a device does it: on a refused connection or a 5xx, up to 3 more tries on a live replica. */
    async function deviceRequest(token: string, path: string, check: (response: Response) => Promise<void>, turn: number) {
      for (let attempt = 0; attempt < 4; attempt++) {
        const pool = [...live];
        const url = pool[(turn + attempt) % pool.length]!;
        try {
          const response = await fetch(url + path, { headers: { authorization: `Bearer ${token}`, ...(path === "/iot/firmware" && turn % 2 ? { range: "bytes=1000-2999" } : {}) } });
          if (response.status >= 500) throw new Error(`${response.status} ${await response.text()}`);
          await check(response);
          served.set(url, (served.get(url) ?? 0) + 1);
          return;
        } catch (error) {
          if (attempt === 3) failures.push(`${path} via ${url}: ${(error as Error).message}`);
          else retried++;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    }
    const checkFirmware = (turn: number) => async (response: Response) => {
      const body = new Uint8Array(await response.arrayBuffer());
      if (turn % 2) {
        assert.equal(response.status, 206);
        assert.deepEqual(body, image.subarray(1000, 3000));
      } else {
        assert.equal(response.status, 200);
        assert.deepEqual(body, image);
      }
    };
    const pollers = devices.map(async (device, n) => {
      for (let turn = n; polling; turn++) {
        polls++;
        await deviceRequest(device.token, "/iot/config", async (response) => assert.equal(response.status, 200, await response.text()), turn);
        await deviceRequest(device.token, "/iot/firmware", checkFirmware(turn), turn);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });

    await new Promise((resolve) => setTimeout(resolve, 1000));
    // Restart b: it stops taking new requests (out of the Service), drains and exits; a new process takes its place.
    const old = replicaProcess.get(b)!;
    live.delete(b);
    old.process.kill("SIGTERM");
    assert.equal(await old.exited(30_000), 0);
    const restarted = await startReplica("b2", { FIRMWARE_CACHE_BYTES: "0" });
    live.add(restarted);
    urls.push(restarted);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    polling = false;
    await Promise.all(pollers);

    assert.deepEqual(failures, [], `failed device requests after retries (${retried} retried of ${polls * 2})`);
    for (const url of [a, b, restarted]) assert.ok((served.get(url) ?? 0) > 0, `${url} served devices`);
  });
});
