/**
 * The embedded default (CONTRACT §9): the real server process with nothing configured — PGlite under ./data,
 * a generated admin token printed once — over real HTTP, restarts, and the CLI refusing a data directory in use.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildImage } from "./support/firmware-image.ts";
import { bareEnv, runEntry, type Child } from "./support/process.ts";

const STOP_DEADLINE_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;

type Running = { child: Child; url: string; get(path: string): Promise<Response>; post(path: string, body: unknown): Promise<Response> };

describe("embedded default: the real server on PGlite", () => {
  const cwd = mkdtempSync(join(tmpdir(), "iot-embedded-"));
  const dataDir = join(cwd, "data");
  const running: Child[] = [];
  let token = "";

  after(() => {
    for (const child of running) child.kill();
    rmSync(cwd, { recursive: true, force: true });
  });

  /** Starts `server.ts` with nothing but free ports (the printed URL tells the real one) and waits until it is ready. */
  async function start(): Promise<Running> {
    const child = runEntry("server.ts", [], { cwd, env: bareEnv({ PORT: "0", EMBEDDED_MQTT_PORT: "0" }) });
    running.push(child);
    const [, url] = await child.waitForOutput(/"url":"(http:\/\/localhost:\d+)"[^\n]*"message":"IoT Support Backend listening"/, 60_000);
    const base = url!.replace("localhost", "127.0.0.1");
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await fetch(`${base}/api/health`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline) assert.fail(`/api/health never answered 200\n${child.stdout()}\n${child.stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const auth = () => ({ authorization: `Bearer ${token}` });
    return {
      child,
      url: url!,
      get: (path) => fetch(`${base}${path}`, { headers: auth(), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }),
      post: (path, body) =>
        fetch(`${base}${path}`, {
          method: "POST",
          headers: { ...auth(), "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        }),
    };
  }

  async function stop(server: Running) {
    const started = performance.now();
    server.child.process.kill("SIGTERM");
    const code = await server.child.exited(STOP_DEADLINE_MS);
    const elapsed = performance.now() - started;
    assert.equal(code, 0, `exit code after SIGTERM\n${server.child.stderr()}`);
    assert.ok(elapsed < STOP_DEADLINE_MS, `stopped in ${Math.round(elapsed)} ms`);
    assert.equal(existsSync(join(dataDir, "pglite.lock")), false, "the data directory lock is released");
  }

  const loadTestData = async () => {
    const cli = runEntry("cli.ts", ["load-test-data", "--yes"], { cwd, env: bareEnv() });
    running.push(cli);
    return { code: await cli.exited(120_000), stdout: cli.stdout(), stderr: cli.stderr() };
  };

  test("a CLI command on a fresh data directory creates no admin token and prints none (the server's first start does)", async () => {
    const cli = runEntry("cli.ts", ["migrate"], { cwd, env: bareEnv() });
    running.push(cli);
    assert.equal(await cli.exited(120_000), 0, cli.stderr());
    assert.equal(cli.stdout(), "migrations applied (pglite)\n", "stdout carries only the result");
    assert.equal(existsSync(join(dataDir, "admin-api-token")), false);
  });

  test("first start: prints the URL and the admin token once; the API works with that token; SIGTERM exits 0", async () => {
    const server = await start();
    try {
      assert.match(server.url, /^http:\/\/localhost:\d+$/);
      const printed = server.child.stdout().match(/Admin API token[^\n]*\n\s+(\S+)/);
      assert.ok(printed, `the admin token is printed:\n${server.child.stdout()}`);
      token = readFileSync(join(dataDir, "admin-api-token"), "utf8").trim();
      assert.equal(printed[1], token, "the printed token is the one kept in DATA_DIR/admin-api-token");
      assert.equal(server.child.stdout().split(token).length - 1, 1, "printed exactly once");
      assert.ok(token.length >= 16);

      assert.equal((await fetch(`${server.url.replace("localhost", "127.0.0.1")}/api/devices`)).status, 401, "the admin API needs the token");
      const model = await server.post("/api/device-models", { code: "embedded", name: "Embedded" });
      assert.equal(model.status, 201);
      const device = await server.post("/api/devices", { device_model_id: (await model.json()).id, config: '{"deviceName": "Kept"}' });
      assert.equal(device.status, 201);
      assert.equal((await server.get("/api/health").then((r) => r.json())).database, "connected");
      await stop(server);
    } finally {
      server.child.kill();
    }
  });

  test("restart: the data is still there and the token is not printed again", async () => {
    const server = await start();
    try {
      const list = await (await server.get("/api/devices")).json();
      assert.deepEqual(list.devices.map((d: { device_name: string }) => d.device_name), ["Kept"]);
      assert.ok(!server.child.stdout().includes(token), "the token is not printed on a restart");
      assert.doesNotMatch(server.child.stdout(), /Admin API token \(shown once/);

      // While the server runs, the CLI must not open the same data directory.
      const refused = await loadTestData();
      assert.notEqual(refused.code, 0);
      const reason = refused.stderr.trim();
      assert.equal(reason.split("\n").length, 1, `one line:\n${refused.stderr}`);
      assert.match(reason, /data/i, "names the data directory");
      assert.match(reason, /in use|locked|running/i, reason);
      assert.doesNotMatch(reason, /\n\s+at /);
      const still = await (await server.get("/api/devices")).json();
      assert.equal(still.count, 1, "nothing changed");
      await stop(server);
    } finally {
      server.child.kill();
    }
  });

  test("firmware versions on PGlite: uploads, the same bytes again, deleting an older one (the model is wiped below)", async () => {
    const server = await start();
    try {
      const base = server.url.replace("localhost", "127.0.0.1");
      const [model] = (await (await server.get("/api/device-models")).json()).device_models;
      const upload = async (image: Uint8Array<ArrayBuffer>) => {
        const response = await fetch(`${base}/api/device-models/${model.id}/firmware?rollout=immediate`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" },
          body: image,
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        assert.equal(response.status, 200, await response.clone().text());
        return (await response.json()).version_id as number;
      };
      const first = buildImage({ version: "1.0.0", size: 8000 });
      const firstId = await upload(first);
      await upload(buildImage({ version: "2.0.0", size: 8000 }));
      assert.equal(await upload(first), firstId, "the same bytes are the same version");
      const listed = await (await server.get(`/api/device-models/${model.id}/firmware/versions`)).json();
      assert.deepEqual(listed.versions.map((v: { version: string; stable: boolean }) => [v.version, v.stable]), [["2.0.0", false], ["1.0.0", true]]);
      const older = listed.versions[0].id;
      const deleted = await fetch(`${base}/api/device-models/${model.id}/firmware/versions/${older}`, { method: "DELETE", headers: { authorization: `Bearer ${token}` } });
      assert.equal(deleted.status, 204);
      assert.equal((await (await server.get(`/api/device-models/${model.id}/firmware/versions`)).json()).count, 1);
      await stop(server);
    } finally {
      server.child.kill();
    }
  });

  test("with the server stopped the CLI loads the sample fleet, which the server then serves", async () => {
    const loaded = await loadTestData();
    assert.equal(loaded.code, 0, `${loaded.stdout}\n${loaded.stderr}`);
    assert.match(loaded.stdout, /^loaded \d+ device models and \d+ devices\n$/, "stdout carries only the result");

    const server = await start();
    try {
      const models = await (await server.get("/api/device-models")).json();
      assert.ok(models.count >= 2, JSON.stringify(models));
      assert.ok(!models.device_models.some((m: { code: string }) => m.code === "embedded"), "the existing data was replaced");
      const devices = await (await server.get("/api/devices")).json();
      const states = new Set(devices.devices.map((d: { rotation_state: string }) => d.rotation_state));
      assert.deepEqual([...states].sort(), ["OK", "PENDING", "QUEUED", "TIMEOUT"], "devices in every rotation state");
      assert.ok(!server.child.stdout().includes(token));
      await stop(server);
    } finally {
      server.child.kill();
    }
  });
});
