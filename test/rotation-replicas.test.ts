/**
 * The rotation done by exactly one party at a time, shown with real OS processes: three server processes with the
 * internal scheduler (ROTATION_SCHEDULER=internal, a cycle every second) and the CronJob's command
 * (`cli.ts rotation-job`, run over and over, two at a time) race over one PostgreSQL database and the machine's
 * Mosquitto, behind a round-robin TCP balancer as behind a Service. The fleet is simulated devices: most behave like
 * the deployed firmware (test/support/legacy-device.ts: one secret, shared notice topics, restart after storing the
 * package), two follow the device protocol (test/support/simulated-device.ts). Two rounds: the schedule comes due
 * (every process may be the one that notices) and admins trigger the fleet through all three replicas at once; one
 * replica is restarted during the second round.
 *
 * What a user would see is checked: never more than one device PENDING (the database and GET /api/rotation/status
 * sampled throughout), every device OK at the end with a secret that gets a token and /iot/config through every
 * replica, each device rotated exactly once per round (the audit trail and the secret generations say so), the
 * schedule acted on once, and no device ever refused a token.
 *
 * Then a staged firmware rollout on another model, stepped by the same three servers' timers and by both CronJob
 * commands (`rotation-job` and `rollout-job`) at once, with devices that update as the deployed firmware does
 * (test/support/firmware-device.ts): sampled throughout, never more than max_concurrent admitted, nobody admitted a
 * second time, each device judged updated once, every wave opened once and the rollout completed once.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import postgres from "postgres";
import { generateFernetKey } from "../lib/secrets.ts";
import { ADMIN_TOKEN } from "./support/app.ts";
import { createTestDatabase } from "./support/database.ts";
import { createFirmwareDevice } from "./support/firmware-device.ts";
import { buildImage } from "./support/firmware-image.ts";
import { createLegacyDevice, type LegacyDevice } from "./support/legacy-device.ts";
import { bareEnv, type Child, runEntry, serverProcessEnv } from "./support/process.ts";
import { freePort, MQTT_TEST_URL } from "./support/server.ts";
import { createSimulatedDevice, type SimulatedDevice } from "./support/simulated-device.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const LEGACY_DEVICES = 4;
const PROTOCOL_DEVICES = 2;
const FLEET = LEGACY_DEVICES + PROTOCOL_DEVICES;

/** A TCP balancer in front of the replicas: each new connection goes to the next live one, as a Service does. */
async function startBalancer(port: number) {
  const live: number[] = [];
  const sockets = new Set<Socket>();
  let turn = 0;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    const target = live[turn++ % Math.max(live.length, 1)];
    if (target === undefined) return socket.destroy();
    const upstream = connect(target, "127.0.0.1");
    sockets.add(upstream);
    upstream.once("close", () => sockets.delete(upstream));
    const both = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on("error", both).on("close", both);
    upstream.on("error", both).on("close", both);
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    live,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("rotation raced by three server processes and the CronJob command", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: postgres.Sql;
  let dir: string;
  let balancer: Awaited<ReturnType<typeof startBalancer>>;
  let publicUrl: string;
  const secretKey = generateFernetKey();
  const children: Child[] = [];
  const jobs: Child[] = [];
  const legacy: LegacyDevice[] = [];
  const protocol: SimulatedDevice[] = [];

  function env(name: string, port: number, extra: Record<string, string> = {}) {
    return bareEnv({
      // The balancer's URL: the built-in provider's issuer and the provisioning package's base_url and token_url.
      ...serverProcessEnv({ databaseUrl: database.url, port, baseUrl: publicUrl, secretKey, dataDir: join(dir, name) }),
      MQTT_URL: MQTT_TEST_URL,
      EMBEDDED_MQTT: "false",
      DEVICE_LOG_MQTT: "false",
      // The deployed firmware listens only on the shared topics.
      MQTT_LEGACY_TOPICS: "true",
      WIFI_SSID: "race",
      WIFI_PASSWORD: "race-password",
      ROTATION_SCHEDULER: "internal",
      ROTATION_INTERVAL_SECONDS: "1",
      ROLLOUT_INTERVAL_SECONDS: "1",
      RETENTION_SCHEDULER: "external",
      // Long enough for a loaded machine: a timeout in this test would be a failure to look into.
      ROTATION_TIMEOUT_SECONDS: "30",
      ROTATION_RETRY_BACKOFF_SECONDS: "1",
      LOG_LEVEL: "warn",
      LOG_FORMAT: "json",
      ...extra,
    });
  }

  async function startReplica(name: string, migrate = false): Promise<{ port: number; child: Child }> {
    const port = await freePort();
    const child = runEntry("server.ts", [], { cwd: dir, env: env(name, port, { MIGRATE_ON_START: String(migrate), LOG_LEVEL: "info" }) });
    children.push(child);
    await child.waitForOutput(/listening/, 60_000);
    return { port, child };
  }

  /** A CronJob: `command` over and over, `parallel` at a time, until `stop()`; collects every run. */
  function cronJobs(command: "rotation-job" | "rollout-job", parallel: number) {
    let running = true;
    const loops = Array.from({ length: parallel }, async () => {
      while (running) {
        const job = runEntry("cli.ts", [command], { cwd: dir, env: env("job", 0, { ROTATION_SCHEDULER: "external" }) });
        jobs.push(job);
        await job.exited(60_000);
      }
    });
    return async () => {
      running = false;
      await Promise.all(loops);
    };
  }

  const admin = (method: string, path: string) => fetch(publicUrl + path, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

  before(async () => {
    database = await createTestDatabase();
    sql = postgres(database.url, { max: 2, onnotice: () => {} });
    dir = mkdtempSync(join(tmpdir(), "iot-rotation-replicas-"));
    const balancerPort = await freePort();
    publicUrl = `http://127.0.0.1:${balancerPort}`;
    balancer = await startBalancer(balancerPort);
    // The first replica migrates; the other two start once the schema is there, at the same time.
    balancer.live.push((await startReplica("a", true)).port);
    const rest = await Promise.all([startReplica("b"), startReplica("c")]);
    balancer.live.push(...rest.map((replica) => replica.port));
  });

  after(async () => {
    await Promise.all([...legacy.map((device) => device.stop()), ...protocol.map((device) => device.disconnect())]);
    for (const child of [...children, ...jobs]) {
      if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGTERM");
      await child.exited(30_000).catch(() => child.kill());
    }
    await balancer?.close();
    await sql?.end();
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("never two devices PENDING; every device rotated exactly once per round, ends OK with a working secret, and none is locked out", async () => {
    const started = Date.now();
    const json = { "content-type": "application/json" };
    const model = await (await fetch(`${publicUrl}/api/device-models`, { method: "POST", headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...json }, body: JSON.stringify({ code: "race", name: "Race" }) })).json();
    const fleet: { id: number; clientId: string; secret: string }[] = [];
    for (let i = 0; i < FLEET; i++) {
      const created = await fetch(`${publicUrl}/api/devices`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...json },
        body: JSON.stringify({ device_model_id: model.id, config: JSON.stringify({ deviceName: `racer ${i}` }) }),
      });
      assert.equal(created.status, 201, await created.clone().text());
      const { id } = await created.json();
      const pkg = await (await admin("GET", `/api/devices/${id}/provisioning`)).json();
      fleet.push({ id, clientId: pkg.client_id, secret: pkg.client_secret });
    }
    const tokenUrl = `${publicUrl}/oauth2/token`;
    for (const device of fleet.slice(0, LEGACY_DEVICES)) legacy.push(createLegacyDevice({ baseUrl: `${publicUrl}/`, tokenUrl, clientId: device.clientId, secret: device.secret }));
    for (const device of fleet.slice(LEGACY_DEVICES)) protocol.push(createSimulatedDevice({ baseUrl: publicUrl, tokenUrl, clientId: device.clientId, secret: device.secret }));
    await Promise.all([...legacy.map((device) => device.untilRunning(30_000)), ...protocol.map((device) => device.ready)]);

    // What an observer sees, sampled throughout: the database itself and the status route through the balancer.
    let sampling = true;
    let databaseSamples = 0;
    let statusSamples = 0;
    let mostPendingInDatabase = 0;
    let mostPendingInStatus = 0;
    const statusFailures: string[] = [];
    let statusRetries = 0;
    const samplers = [
      (async () => {
        while (sampling) {
          const [row] = await sql`select count(*)::int as n from devices where rotation_state = 'PENDING'`;
          mostPendingInDatabase = Math.max(mostPendingInDatabase, row!.n);
          databaseSamples++;
          await sleep(10);
        }
      })(),
      (async () => {
        while (sampling) {
          // As a dashboard does: a connection the restarting replica closed under it is tried again.
          for (let attempt = 0; ; attempt++) {
            try {
              const status = await admin("GET", "/api/rotation/status");
              if (status.status !== 200) statusFailures.push(`${status.status} ${await status.text()}`);
              else {
                const body = await status.json();
                mostPendingInStatus = Math.max(mostPendingInStatus, body.counts_by_state.PENDING ?? 0);
                statusSamples++;
              }
              break;
            } catch (error) {
              if (attempt === 2) {
                statusFailures.push((error as Error).message);
                break;
              }
              statusRetries++;
              await sleep(100);
            }
          }
          await sleep(100);
        }
      })(),
    ];
    const stopJobs = cronJobs("rotation-job", 2);

    async function allOk(round: number, timeoutMs = 25_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const rows = await sql`select count(*)::int as completed from audit_events where kind = 'rotation.completed'`;
        const states = await sql`select rotation_state as state, count(*)::int as n from devices group by rotation_state`;
        const ok = states.find((row) => row.state === "OK")?.n ?? 0;
        if (ok === FLEET && rows[0]!.completed >= FLEET * round) return;
        if (Date.now() > deadline) {
          const pending = await sql`select id, client_id from devices where rotation_state = 'PENDING'`;
          const events = await sql`select at, actor, kind, details from audit_events where device_id = ${pending[0]?.id ?? 0} order by id`;
          const devices = [...legacy.map((d) => ({ id: d.clientId, running: d.running, restarts: d.restarts, lockouts: d.lockouts })), ...protocol.map((d) => ({ id: d.clientId, rotations: d.rotations }))];
          throw new Error(
            `round ${round}: not every device rotated in time: ${JSON.stringify(states)}, ${rows[0]!.completed} completed; pending ${JSON.stringify(pending)}: ${JSON.stringify(events)}; devices ${JSON.stringify(devices)}`,
          );
        }
        await sleep(200);
      }
    }

    try {
      // Round 1: the schedule comes due. The baseline is set back past the last occurrence, as if the first Saturday's
      // 08:00 had passed since anybody looked: all three servers' timers and the CronJob runs see it at once.
      await sql`
        insert into settings (key, value) values ('rotation.schedule_baseline', '2000-01-01T00:00:00.000Z')
        on conflict (key) do update set value = excluded.value`;
      await allOk(1);

      // Round 2: three admins trigger the fleet at the same moment, one through each replica; meanwhile the first
      // replica is restarted (taken out of the balancer, SIGTERM, a new process in its place).
      const triggers = await Promise.all(
        balancer.live.map((port) => fetch(`http://127.0.0.1:${port}/api/rotation/trigger`, { method: "POST", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })),
      );
      for (const response of triggers) assert.equal(response.status, 200, await response.clone().text());
      await sleep(500);
      // As in Kubernetes (docs/operations.md): out of the Service first, the preStop sleep, then SIGTERM.
      const first = children[0]!;
      balancer.live.shift();
      await sleep(5_000);
      first.process.kill("SIGTERM");
      assert.equal(await first.exited(30_000), 0, first.stderr());
      balancer.live.push((await startReplica("a2")).port);
      await allOk(2);
    } finally {
      sampling = false;
      await stopJobs();
      await Promise.all(samplers);
    }

    // Never more than one PENDING, whoever looked.
    assert.ok(databaseSamples > 50 && statusSamples > 20, `sampled ${databaseSamples} times in the database, ${statusSamples} through the API`);
    assert.equal(mostPendingInDatabase, 1, "PENDING devices at once, in the database");
    assert.equal(mostPendingInStatus, 1, "PENDING devices at once, in GET /api/rotation/status");
    assert.deepEqual(statusFailures, []);

    // The schedule was acted on once; the three triggers queued the fleet once between them.
    const fleetEvents = await sql`select kind, details from audit_events where kind in ('rotation.scheduled', 'rotation.triggered') order by id`;
    const scheduled = fleetEvents.filter((event) => event.kind === "rotation.scheduled");
    assert.deepEqual(scheduled.map((event) => event.details.queued_count), [FLEET], "one scheduled queueing of the whole fleet");
    const triggered = fleetEvents.filter((event) => event.kind === "rotation.triggered");
    assert.equal(triggered.length, 3);
    assert.equal(triggered.reduce((sum, event) => sum + event.details.queued_count, 0), FLEET, "the three triggers queued each device once between them");

    // Each device: rotated exactly twice (once per round), each time issued one new secret; nothing timed out.
    const perDevice = await sql`
      select device_id, kind, count(*)::int as n from audit_events
      where kind in ('rotation.started', 'rotation.secret_issued', 'rotation.completed', 'rotation.timed_out', 'rotation.notice_failed') group by device_id, kind`;
    const count = (id: number, kind: string) => perDevice.find((row) => row.device_id === id && row.kind === kind)?.n ?? 0;
    const generations = await sql`select client_id, secret_generation from builtin_clients`;
    for (const device of fleet) {
      const counts = ["rotation.started", "rotation.secret_issued", "rotation.completed", "rotation.timed_out", "rotation.notice_failed"].map((kind) => count(device.id, kind));
      assert.deepEqual(counts, [2, 2, 2, 0, 0], `device ${device.id}: started, secret issued, completed, timed out, notice failed`);
      assert.equal(generations.find((row) => row.client_id === device.clientId)?.secret_generation, 3, `device ${device.id}: two new secrets`);
    }
    const rows = await sql`select id, rotation_state, rotation_unconfirmed, previous_secret_expires_at from devices order by id`;
    for (const row of rows) assert.deepEqual([row.rotation_state, row.rotation_unconfirmed, row.previous_secret_expires_at], ["OK", false, null], `device ${row.id}`);

    // Every device holds a secret that works, through every replica, and none was ever refused a token.
    for (const device of legacy) assert.equal(device.lockouts, 0, `${device.clientId} refused a token`);
    for (const device of protocol) assert.deepEqual([device.rotations, device.candidate], [2, null], device.clientId);
    const secrets = [...legacy.map((device) => ({ clientId: device.clientId, secret: device.secret })), ...protocol.map((device) => ({ clientId: device.clientId, secret: device.secret }))];
    for (const [i, { clientId, secret }] of secrets.entries()) {
      assert.notEqual(secret, fleet[i]!.secret, `${clientId} holds a new secret`);
      for (const port of balancer.live) {
        const base = `http://127.0.0.1:${port}`;
        const issued = await fetch(`${base}/oauth2/token`, { method: "POST", body: new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: secret }) });
        assert.equal(issued.status, 200, `${clientId} token via ${base}`);
        const config = await fetch(`${base}/iot/config`, { headers: { authorization: `Bearer ${(await issued.json()).access_token}` } });
        assert.equal(config.status, 200, `${clientId} /iot/config via ${base}`);
        await config.body?.cancel();
      }
      // The secret it started with no longer works: retired at completion.
      const old = await fetch(tokenUrl, { method: "POST", body: new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: fleet[i]!.secret }) });
      assert.equal(old.status, 401, `${clientId}'s first secret is retired`);
    }

    // The CronJob's runs: every one did its cycle and exited 0 with its one-line summary.
    const finished = jobs.filter((job) => job.process.exitCode !== null);
    jobs.length = 0;
    assert.ok(finished.length >= 2, `${finished.length} rotation-job runs`);
    for (const job of finished) {
      assert.equal(job.process.exitCode, 0, job.stderr());
      assert.match(job.stdout(), /^\{"rotation_job":\{.*"errors":\[\]\},"rollouts_stepped":\d+\}\n$/);
    }
    const startedBy = await sql`select count(*)::int as n from audit_events where kind = 'rotation.started'`;
    console.log(
      `# ${FLEET} devices, ${startedBy[0]!.n} rotations, ${finished.length} rotation-job runs, ${databaseSamples} database and ${statusSamples} status samples (${statusRetries} retried), ${Math.round((Date.now() - started) / 1000)} s`,
    );
  });

  test("a staged rollout stepped by the same three servers and the CronJob commands admits nobody twice and never more than max_concurrent", async () => {
    const started = Date.now();
    const MAX_CONCURRENT = 3;
    const DEVICES = 6;
    const json = { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };
    const post = (path: string, body: unknown) => fetch(publicUrl + path, { method: "POST", headers: json, body: JSON.stringify(body) });
    const upload = async (model: number, version: string, rollout: string) => {
      const response = await fetch(`${publicUrl}/api/device-models/${model}/firmware?rollout=${rollout}`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
        body: buildImage({ version, size: 8192 }) as BodyInit,
      });
      assert.equal(response.status, 200, await response.clone().text());
      return response.json();
    };
    const model = (await (await post("/api/device-models", { code: "staged", name: "Staged" })).json()).id as number;
    await upload(model, "1.0.0", "immediate");
    const devices = [];
    for (let i = 0; i < DEVICES; i++) {
      const created = await post("/api/devices", { device_model_id: model, config: "{}" });
      assert.equal(created.status, 201);
      const pkg = await (await admin("GET", `/api/devices/${(await created.json()).id}/provisioning`)).json();
      // Half say what they run, half say nothing: both are judged.
      devices.push(createFirmwareDevice({ baseUrl: publicUrl, tokenUrl: pkg.token_url, clientId: pkg.client_id, secret: pkg.client_secret, running: "1.0.0", reports: i % 2 === 0 }));
    }
    // A rollout admits only devices seen lately: their sightings are written within seconds, meanwhile it waits.
    await Promise.all(devices.map((device) => device.boot()));

    // The upload starts a rollout with the default plan; it is replaced by one that moves quickly.
    const uploaded = await upload(model, "2.0.0", "staged");
    assert.equal((await fetch(`${publicUrl}/api/device-models/${model}/rollouts/${uploaded.rollout_id}/abort`, { method: "POST", headers: json })).status, 200);
    const created = await post(`/api/device-models/${model}/rollouts`, { version_id: uploaded.version_id, canary_count: 1, waves: [100], soak_seconds: 1, max_concurrent: MAX_CONCURRENT });
    assert.equal(created.status, 201, await created.clone().text());
    const rollout = (await created.json()).id as number;

    // Stepped by the three servers' timers and by both CronJob commands; the devices act on their notices.
    const stopJobs = [cronJobs("rotation-job", 1), cronJobs("rollout-job", 1)];
    let running = true;
    let mostAdmitted = 0;
    let samples = 0;
    const admittedAt = new Map<number, number>();
    const admittedTwice: string[] = [];
    const sampler = (async () => {
      while (running) {
        const rows = await sql`select device_id, state, admitted_at from rollout_devices where rollout_id = ${rollout}`;
        mostAdmitted = Math.max(mostAdmitted, rows.filter((row) => row.state === "admitted").length);
        for (const row of rows) {
          if (!row.admitted_at) continue;
          const at = new Date(row.admitted_at).getTime();
          const seen = admittedAt.get(row.device_id);
          if (seen === undefined) admittedAt.set(row.device_id, at);
          else if (seen !== at) admittedTwice.push(`device ${row.device_id}: ${new Date(seen).toISOString()}, then ${new Date(at).toISOString()}`);
        }
        samples++;
        await sleep(20);
      }
    })();
    const pollers = devices.map(async (device) => {
      while (running) {
        await device.notified().catch(() => {});
        await sleep(250);
      }
    });
    let state = "running";
    try {
      const deadline = Date.now() + 40_000;
      while (state !== "completed" && Date.now() < deadline) {
        await sleep(250);
        state = (await (await admin("GET", `/api/device-models/${model}/rollouts/${rollout}`)).json()).state;
      }
    } finally {
      running = false;
      await Promise.all([sampler, ...pollers]);
      await Promise.all(stopJobs.map((stop) => stop()));
    }

    const final = await (await admin("GET", `/api/device-models/${model}/rollouts/${rollout}`)).json();
    assert.equal(state, "completed", JSON.stringify(final));
    const failed = await sql`select device_id, failure_reason, downloads, restarts_after_download, admitted_at, first_download_at, last_download_at, config_at from rollout_devices where rollout_id = ${rollout} and state = 'failed'`;
    assert.deepEqual(final.counts, { pending: 0, admitted: 0, succeeded: DEVICES, failed: 0 }, `failed: ${JSON.stringify(failed)}`);
    assert.ok(samples > 50, `${samples} samples`);
    assert.ok(mostAdmitted >= 1 && mostAdmitted <= MAX_CONCURRENT, `at most ${MAX_CONCURRENT} admitted at once, saw ${mostAdmitted}`);
    assert.deepEqual(admittedTwice, [], "a device admitted a second time");
    assert.equal(admittedAt.size, DEVICES);
    assert.deepEqual(devices.map((device) => device.running), Array(DEVICES).fill("2.0.0"));
    // One success per device, the one wave after the canary's opened once, one completion.
    const events = await sql`select kind, device_id, details from audit_events where kind like 'rollout.%' and details->>'rollout_id' = ${String(rollout)}`;
    const succeeded = events.filter((event) => event.kind === "rollout.device_succeeded").map((event) => event.device_id);
    assert.equal(succeeded.length, DEVICES);
    assert.equal(new Set(succeeded).size, DEVICES, "each device judged updated once");
    assert.deepEqual(events.filter((event) => event.kind === "rollout.wave_opened").map((event) => event.details.wave), [1]);
    assert.equal(events.filter((event) => event.kind === "rollout.completed").length, 1);
    assert.equal((await (await admin("GET", `/api/device-models/${model}`)).json()).firmware_version, "2.0.0");

    const finished = jobs.filter((job) => job.process.exitCode !== null);
    for (const job of finished) assert.equal(job.process.exitCode, 0, job.stderr());
    console.log(`# rollout of ${DEVICES} devices: at most ${mostAdmitted} admitted at once in ${samples} samples, ${finished.length} job runs, ${Math.round((Date.now() - started) / 1000)} s`);
  });
});
