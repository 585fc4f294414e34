/**
 * Staged firmware rollouts (docs/rollouts.md) against real PostgreSQL, with simulated devices that update the way
 * the deployed firmware does (test/support/firmware-device.ts): some report what they run, some say nothing, some
 * roll back, some stay offline. Each test drives the rollout step itself, as the scheduler or the CronJob would.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout } from "node:timers/promises";
import { and, eq } from "drizzle-orm";
import { devices, rolloutDevices } from "../db/schema.ts";
import { ADMIN_TOKEN } from "./support/app.ts";
import { createFleet, deviceRow } from "./support/fleet.ts";
import { buildImage } from "./support/firmware-image.ts";
import { createFirmwareDevice, type FirmwareDevice, type FirmwareFault } from "./support/firmware-device.ts";
import { bareEnv, runEntry } from "./support/process.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

let server: TestServer;
let second: TestServer;

before(async () => {
  server = await startTestServer();
  second = await startTestServer({ databaseUrl: server.databaseUrl });
});
after(async () => {
  await second?.stop();
  await server?.close();
});

async function upload(target: TestServer, modelId: number, version: string, query = "?rollout=immediate") {
  const response = await fetch(`${target.url}/api/device-models/${modelId}/firmware${query}`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
    body: buildImage({ version, size: 4096 }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

/** A model on 1.0.0 with `count` devices that run it and have been seen; `faults`/`reports` per device index. */
async function fleetOn(count: number, options: { faults?: Record<number, FirmwareFault>; reporters?: number[] } = {}) {
  const fleet = await createFleet(server, count);
  const modelId = (await deviceRow(server, fleet[0]!.id)).deviceModelId;
  const old = await upload(server, modelId, "1.0.0");
  const devices = fleet.map((device, i) =>
    createFirmwareDevice({
      baseUrl: server.url,
      tokenUrl: server.services.identity.tokenUrl,
      clientId: device.clientId,
      secret: device.secret,
      running: "1.0.0",
      reports: options.reporters?.includes(i) ?? i % 2 === 0,
      fault: options.faults?.[i] ?? "none",
    }),
  );
  await Promise.all(devices.map((device) => device.boot()));
  // Their sightings are written within seconds; a rollout admits only devices seen lately.
  await settle();
  return { fleet, devices, modelId, oldVersionId: old.version_id as number };
}

/**
 * Uploads `version` (which starts a rollout with the default plan), aborts that rollout, and starts one with `plan`
 * instead; returns it.
 */
async function rollOut(modelId: number, version: string, plan: Record<string, unknown>) {
  const uploaded = await upload(server, modelId, version, "?rollout=staged");
  assert.equal(uploaded.rollout, "staged");
  assert.equal((await server.admin("POST", `/api/device-models/${modelId}/rollouts/${uploaded.rollout_id}/abort`)).status, 200);
  const created = await server.admin("POST", `/api/device-models/${modelId}/rollouts`, { version_id: uploaded.version_id, ...plan });
  assert.equal(created.status, 201, await created.clone().text());
  return created.json();
}

async function settle(target: TestServer = server) {
  await target.services.deviceState.flush();
  await target.services.rollouts.flush();
}

async function step(target: TestServer = server) {
  await settle(target);
  await target.services.rollouts.tick();
}

/**
 * Steps until `done` holds (at most 20 times): what a device did is written right after its response went out, which
 * under load can be a moment after the device itself has moved on.
 */
async function stepUntil(modelId: number, id: number, done: (rollout: { state: string; counts: Record<string, number> }) => boolean) {
  for (let attempt = 0; ; attempt++) {
    await step();
    const now = await rolloutOf(modelId, id);
    if (done(now) || attempt >= 20) return now;
    await setTimeout(50);
  }
}

const rolloutOf = async (modelId: number, id: number) => (await server.admin("GET", `/api/device-models/${modelId}/rollouts/${id}`)).json();

async function targetOf(device: FirmwareDevice, secret: string) {
  const body = new URLSearchParams({ grant_type: "client_credentials", client_id: device.clientId, client_secret: secret });
  const token = (await (await fetch(server.services.identity.tokenUrl, { method: "POST", body })).json()).access_token;
  return (await (await fetch(`${server.url}/iot/firmware-version`, { headers: { authorization: `Bearer ${token}` } })).json()).firmware_version;
}

describe("staged rollouts", () => {
  it("goes canary → waves → completed, never more than max_concurrent at once; every device ends on the new version, which becomes stable", async () => {
    const { devices, modelId } = await fleetOn(12);
    const rollout = await rollOut(modelId, "2.0.0", { waves: [25, 50, 100], soak_seconds: 0, max_concurrent: 2 });
    let maxAdmitted = 0;
    for (let round = 0; round < 40; round++) {
      await step();
      const now = await rolloutOf(modelId, rollout.id);
      maxAdmitted = Math.max(maxAdmitted, now.counts.admitted);
      if (now.state === "completed") break;
      await Promise.all(devices.map((device) => device.notified()));
    }
    const done = await rolloutOf(modelId, rollout.id);
    if (done.state !== "completed") console.log("DEBUG", JSON.stringify(done), JSON.stringify(devices.map((d) => d.running)));
    assert.equal(done.state, "completed", JSON.stringify(done));
    assert.deepEqual(done.counts, { pending: 0, admitted: 0, succeeded: 12, failed: 0 });
    const { rollouts: listed, count } = await (await server.admin("GET", `/api/device-models/${modelId}/rollouts`)).json();
    const { devices: _devices, ...summary } = done;
    assert.deepEqual([count, listed[0]], [2, summary], "the list (newest first) says what the rollout says; the aborted default rollout is the other");
    assert.ok(maxAdmitted <= 2, `at most 2 admitted at once, saw ${maxAdmitted}`);
    assert.deepEqual(devices.map((device) => device.running), Array(12).fill("2.0.0"));
    assert.equal((await (await server.admin("GET", `/api/device-models/${modelId}`)).json()).firmware_version, "2.0.0");
    // The canary proved the image before anyone else was offered it.
    const canary = done.devices.find((device: { wave: number }) => device.wave === 0);
    const others = done.devices.filter((device: { wave: number }) => device.wave > 0);
    assert.ok(others.every((device: { admitted_at: string }) => device.admitted_at >= canary.settled_at));
    // The audit trail tells the story: started by the admin, waves and verdicts by the system, then stable.
    const { events } = await (await server.admin("GET", `/api/audit?model_id=${modelId}&limit=1000`)).json();
    const ofRollout = events.filter((event: { details: { rollout_id?: number } }) => event.details.rollout_id === rollout.id).reverse();
    const kinds = ofRollout.map((event: { kind: string }) => event.kind);
    assert.equal(kinds[0], "rollout.started");
    assert.equal(ofRollout[0].actor, "admin-api-token");
    assert.deepEqual(kinds.filter((kind: string) => kind === "rollout.wave_opened").length, 3);
    assert.deepEqual(kinds.filter((kind: string) => kind === "rollout.device_succeeded").length, 12);
    assert.equal(kinds.at(-1), "rollout.completed");
    assert.ok(ofRollout.slice(1).every((event: { actor: string }) => event.actor === "system"));
    assert.ok(events.some((event: { kind: string; details: { version?: string } }) => event.kind === "firmware.stable_changed" && event.details.version === "2.0.0"));
  });

  it("a canary that rolls back pauses the rollout before any other device is offered the image", async () => {
    const { devices, modelId, fleet } = await fleetOn(6, { faults: { 0: "rollback" }, reporters: [0] });
    const created = await rollOut(modelId, "2.0.0", { canary_device_ids: [fleet[0]!.id], soak_seconds: 0 });
    for (let round = 0; round < 4; round++) {
      await step();
      await Promise.all(devices.map((device) => device.notified()));
    }
    const paused = await stepUntil(modelId, created.id, (now) => now.state === "paused");
    assert.equal(paused.state, "paused");
    assert.match(paused.pause_reason, /canary/);
    assert.equal(paused.counts.failed, 1);
    assert.match(paused.devices[0].failure_reason, /rollback|invalid/);
    // Nobody else was offered 2.0.0; the canary is back on what it ran.
    assert.deepEqual(devices.map((device) => device.running), Array(6).fill("1.0.0"));
    for (const [i, device] of devices.entries()) assert.equal(await targetOf(device, fleet[i]!.secret), "1.0.0");
  });


  it("after the canary, failures beyond the threshold pause; resumed, it completes; failed devices keep their version until retried", async () => {
    const { devices, modelId, fleet } = await fleetOn(6, { faults: { 1: "rollback", 2: "rollback" }, reporters: [0, 1, 2] });
    const rollout = await rollOut(modelId, "2.0.0", { canary_device_ids: [fleet[0]!.id], waves: [100], soak_seconds: 0, failure_threshold_percent: 0 });
    let now = await rolloutOf(modelId, rollout.id);
    for (let round = 0; round < 20 && now.state === "running"; round++) {
      await Promise.all(devices.map((device) => device.notified()));
      now = await stepUntil(modelId, rollout.id, (r) => r.state !== "running" || r.counts.failed >= 2);
    }
    assert.equal(now.state, "paused", JSON.stringify(now.counts));
    assert.match(now.pause_reason, /2 devices failed, more than the 1 the plan allows/);
    // Resumed, the failures seen are accepted (with every device already judged, it may complete at once).
    now = await (await server.admin("POST", `/api/device-models/${modelId}/rollouts/${rollout.id}/resume`)).json();
    assert.notEqual(now.state, "paused");
    for (let round = 0; round < 20 && now.state !== "completed"; round++) {
      await Promise.all(devices.map((device) => device.notified()));
      now = await stepUntil(modelId, rollout.id, (r) => r.state === "completed");
    }
    assert.deepEqual([now.state, now.counts.succeeded, now.counts.failed], ["completed", 4, 2]);
    assert.deepEqual(devices.map((device) => device.running), ["2.0.0", "1.0.0", "1.0.0", "2.0.0", "2.0.0", "2.0.0"]);
    assert.equal(await targetOf(devices[1]!, fleet[1]!.secret), "1.0.0", "a failed device is not offered the version again");
    const retried = await server.admin("POST", `/api/device-models/${modelId}/rollouts/${rollout.id}/devices/${fleet[1]!.id}/retry`);
    assert.equal(retried.status, 200);
    assert.equal(await targetOf(devices[1]!, fleet[1]!.secret), "2.0.0");
  });

  it("a canary that crashes running the new version (it uploads a core dump) fails and pauses the rollout; the fleet view counts the crash", async () => {
    const { devices, modelId, fleet } = await fleetOn(3);
    const rollout = await rollOut(modelId, "2.0.0", { canary_device_ids: [fleet[0]!.id], soak_seconds: 3600 });
    await Promise.all(devices.map((device) => device.notified()));
    await stepUntil(modelId, rollout.id, (now) => now.counts.succeeded === 1);
    assert.equal(devices[0]!.running, "2.0.0");
    // As the deployed firmware does after a crash: the core dump ELF, with its running version.
    const body = new URLSearchParams({ grant_type: "client_credentials", client_id: fleet[0]!.clientId, client_secret: fleet[0]!.secret });
    const token = (await (await fetch(server.services.identity.tokenUrl, { method: "POST", body })).json()).access_token;
    const dump = await fetch(`${server.url}/api/iot/coredump?chip=esp32s2&firmware_version=2.0.0`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" },
      body: new Uint8Array([0x7f, 0x45, 0x4c, 0x46, ...new Array(60).fill(0)]),
    });
    assert.ok(dump.status < 300, `core dump: ${dump.status}`);
    const paused = await stepUntil(modelId, rollout.id, (now) => now.state === "paused");
    assert.equal(paused.state, "paused");
    assert.match(paused.devices[0].failure_reason, /crashed running 2\.0\.0/);
    const fleetView = await (await server.admin("GET", `/api/device-models/${modelId}/fleet`)).json();
    assert.equal(fleetView.versions.find((entry: { version: string }) => entry.version === "2.0.0").crashes, 1);
  });

  it("a legacy device that downloads the image again after restarting (rollback loop) fails; offline devices do not hold a wave and get the version when they return", async () => {
    const fleet = await createFleet(server, 5);
    const modelId = (await deviceRow(server, fleet[0]!.id)).deviceModelId;
    await upload(server, modelId, "1.0.0");
    const make = (i: number, fault: FirmwareFault = "none") =>
      createFirmwareDevice({ baseUrl: server.url, tokenUrl: server.services.identity.tokenUrl, clientId: fleet[i]!.clientId, secret: fleet[i]!.secret, running: "1.0.0", fault });
    const looping = make(1, "rollback-unmarked");
    const online = [make(0), looping, make(2), make(3)];
    const offline = make(4);
    await Promise.all(online.map((device) => device.boot()));
    // The soak time is what catches a loop: the looping device is judged a success after its first restart.
    const created = await rollOut(modelId, "2.0.0", { canary_device_ids: [fleet[0]!.id], waves: [100], soak_seconds: 2, failure_threshold_percent: 50 });
    for (let round = 0; round < 40; round++) {
      await step();
      if ((await rolloutOf(modelId, created.id)).state === "completed") break;
      await Promise.all(online.map((device) => device.notified(1)));
      await setTimeout(200);
    }
    const done = await rolloutOf(modelId, created.id);
    assert.equal(done.state, "completed", JSON.stringify(done));
    const byId = new Map(done.devices.map((device: { device_id: number }) => [device.device_id, device]));
    assert.match((byId.get(fleet[1]!.id) as { failure_reason: string }).failure_reason, /again after restarting/);
    assert.equal((byId.get(fleet[4]!.id) as { state: string }).state, "pending");
    // The looping device is not offered 2.0.0 again; the offline one gets it (now stable) when it returns.
    assert.equal(await targetOf(looping, fleet[1]!.secret), "1.0.0");
    await offline.boot();
    assert.equal(offline.running, "2.0.0");
  });
});

describe("device events written out of order", () => {
  it("a config fetch whose write lands after that of a later download is no restart on it, and keeps the latest fetch time", async () => {
    const { fleet, modelId } = await fleetOn(1);
    const created = await rollOut(modelId, "2.0.0", { canary_count: 0, waves: [100], soak_seconds: 0 });
    await step();
    const member = and(eq(rolloutDevices.rolloutId, created.id), eq(rolloutDevices.deviceId, fleet[0]!.id));
    const { db } = server.services.database;
    // The write of a download that finished after the fetch below (and of a later fetch) already landed.
    const later = new Date(Date.now() + 5_000);
    await db.update(rolloutDevices).set({ downloads: 1, firstDownloadAt: later, lastDownloadAt: later, configAt: later }).where(member);
    const body = new URLSearchParams({ grant_type: "client_credentials", client_id: fleet[0]!.clientId, client_secret: fleet[0]!.secret });
    const token = (await (await fetch(server.services.identity.tokenUrl, { method: "POST", body })).json()).access_token;
    assert.equal((await fetch(`${server.url}/api/iot/config`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    await settle();
    const [row] = await db.select().from(rolloutDevices).where(member);
    assert.equal(row!.restartsAfterDownload, 0);
    assert.equal(row!.configAt!.getTime(), later.getTime());
  });
});

describe("replicas", () => {
  it("two servers and the rollout-job command stepping the same rollout at once admit no device twice and never more than max_concurrent", async () => {
    const { modelId } = await fleetOn(10);
    const created = await rollOut(modelId, "2.0.0", { canary_count: 0, waves: [100], soak_seconds: 0, max_concurrent: 3 });
    await settle();
    await settle(second);
    // The CronJob's command, as a real process, races the two servers' schedulers.
    const job = runEntry("cli.ts", ["rollout-job"], { cwd: server.env.DATA_DIR!, env: bareEnv({ ...server.env }) });
    await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? server : second).services.rollouts.tick()));
    assert.equal(await job.exited(), 0, job.stderr());
    // One line: how many active rollouts (of every test model in this database) it stepped.
    assert.match(job.stdout(), /^\{"rollouts_stepped":\d+\}\n$/, `stdout: ${job.stdout()}`);
    const rows = await server.services.database.db.select().from(rolloutDevices).where(eq(rolloutDevices.rolloutId, created.id));
    assert.equal(rows.filter((row) => row.state === "admitted").length, 3);
    // Each admitted device was told once: its admission time is one instant, shared by the step that admitted it.
    const rollout = await rolloutOf(modelId, created.id);
    assert.deepEqual(rollout.counts, { pending: 7, admitted: 3, succeeded: 0, failed: 0 });
  });
});

describe("admin actions", () => {
  it("abort gives admitted devices their previous target and lets the successful keep theirs; revert rolls those back; every device ends with a working target", async () => {
    const { devices, modelId, fleet } = await fleetOn(6);
    const rollout = await rollOut(modelId, "2.0.0", { canary_count: 2, waves: [100], soak_seconds: 3600, max_concurrent: 2 });
    // Both canaries update; then the rollout soaks (nobody else admitted).
    for (let round = 0; round < 3; round++) {
      await step();
      await Promise.all(devices.map((device) => device.notified()));
    }
    const soaking = await stepUntil(modelId, rollout.id, (now) => now.counts.succeeded === 2);
    assert.deepEqual([soaking.state, soaking.current_wave, soaking.counts.succeeded], ["running", 0, 2]);
    const aborted = await (await server.admin("POST", `/api/device-models/${modelId}/rollouts/${rollout.id}/abort`)).json();
    assert.equal(aborted.state, "aborted");
    const updated = devices.filter((device) => device.running === "2.0.0");
    assert.equal(updated.length, 2);
    for (const [i, device] of devices.entries()) assert.equal(await targetOf(device, fleet[i]!.secret), device.running, "every device's target is what it runs");
    // Abort is final.
    assert.equal((await server.admin("POST", `/api/device-models/${modelId}/rollouts/${rollout.id}/resume`)).status, 409);

    const revert = await server.admin("POST", `/api/device-models/${modelId}/rollouts/${rollout.id}/revert`);
    assert.equal(revert.status, 201);
    const back = await revert.json();
    assert.equal(back.version, "1.0.0");
    assert.equal(back.counts.pending + back.counts.admitted, 2, "only the two updated devices take part");
    for (let round = 0; round < 10 && (await rolloutOf(modelId, back.id)).state !== "completed"; round++) {
      await server.admin("POST", `/api/device-models/${modelId}/rollouts/${back.id}/advance`);
      await step();
      await Promise.all(devices.map((device) => device.notified()));
    }
    assert.equal((await rolloutOf(modelId, back.id)).state, "completed");
    assert.deepEqual(devices.map((device) => device.running), Array(6).fill("1.0.0"));
  });

  it("pause, resume and advance move only in the states they name; a pin overrides the rollout and unpinning follows it again", async () => {
    const { devices, modelId, fleet, oldVersionId } = await fleetOn(3);
    const rollout = await rollOut(modelId, "2.0.0", { canary_device_ids: [fleet[0]!.id], soak_seconds: 3600 });
    const path = `/api/device-models/${modelId}/rollouts/${rollout.id}`;
    assert.equal((await server.admin("POST", `${path}/resume`)).status, 409);
    assert.equal((await (await server.admin("POST", `${path}/pause`)).json()).state, "paused");
    assert.equal((await server.admin("POST", `${path}/pause`)).status, 409);
    // Paused: the admitted canary is still judged, nobody new is admitted.
    await Promise.all(devices.map((device) => device.notified()));
    const paused = await stepUntil(modelId, rollout.id, (now) => now.counts.succeeded === 1);
    assert.deepEqual([paused.state, paused.counts.succeeded, paused.counts.admitted], ["paused", 1, 0]);
    assert.equal((await (await server.admin("POST", `${path}/resume`)).json()).state, "running");
    assert.equal((await (await server.admin("POST", `${path}/advance`)).json()).current_wave, 1);

    // Pin device 2 to 1.0.0: the rollout lets it go; unpinned, it waits for admission again.
    const pinned = await server.admin("PUT", `/api/devices/${fleet[2]!.id}/firmware-pin`, { version_id: oldVersionId });
    assert.equal(pinned.status, 200);
    assert.deepEqual([(await pinned.json()).firmware_pin_version_id, await targetOf(devices[2]!, fleet[2]!.secret)], [oldVersionId, "1.0.0"]);
    await server.admin("POST", `${path}/advance`);
    await server.admin("POST", `${path}/advance`);
    await step();
    assert.equal(await targetOf(devices[2]!, fleet[2]!.secret), "1.0.0", "a pinned device is never admitted");
    const unpinned = await (await server.admin("DELETE", `/api/devices/${fleet[2]!.id}/firmware-pin`)).json();
    assert.equal(unpinned.firmware_pin_version_id, null);
    const { events } = await (await server.admin("GET", `/api/audit?device_id=${fleet[2]!.id}`)).json();
    assert.deepEqual(
      events.slice(0, 2).map((event: { kind: string; actor: string }) => [event.kind, event.actor]),
      [["firmware.unpinned", "admin-api-token"], ["firmware.pinned", "admin-api-token"]],
    );
    await step();
    assert.equal(await targetOf(devices[2]!, fleet[2]!.secret), "2.0.0");
  });

  it("bad plans, unknown versions, a second active rollout, a version in use and a foreign pin: 4xx with the envelope, nothing changed", async () => {
    const { modelId, fleet, oldVersionId } = await fleetOn(2);
    const rollout = await rollOut(modelId, "2.0.0", { soak_seconds: 3600 });
    const other = (await createFleet(server, 1))[0]!;
    const otherModel = (await deviceRow(server, other.id)).deviceModelId;
    const foreign = await upload(server, otherModel, "9.0.0");
    const before = JSON.stringify(await (await server.admin("GET", `/api/device-models/${modelId}/rollouts`)).json());
    const cases: [string, string, unknown, number, string][] = [
      ["POST", `/api/device-models/${modelId}/rollouts`, { version_id: oldVersionId, waves: [50, 10] }, 400, "VALIDATION_FAILED"],
      ["POST", `/api/device-models/${modelId}/rollouts`, { version_id: oldVersionId, waves: [50] }, 400, "VALIDATION_FAILED"],
      ["POST", `/api/device-models/${modelId}/rollouts`, { version_id: oldVersionId, max_concurrent: 0 }, 400, "VALIDATION_FAILED"],
      ["POST", `/api/device-models/${modelId}/rollouts`, { version_id: foreign.version_id }, 400, "VALIDATION_FAILED"],
      ["POST", `/api/device-models/${modelId}/rollouts`, { version_id: oldVersionId, surprise: 1 }, 400, "VALIDATION_FAILED"],
      ["POST", `/api/device-models/${modelId}/rollouts`, { version_id: oldVersionId, confirm_downgrade: true }, 409, "ROLLOUT_ACTIVE"],
      ["POST", `/api/device-models/${modelId}/rollouts/999999/pause`, undefined, 404, "ROLLOUT_NOT_FOUND"],
      ["POST", `/api/device-models/${modelId}/rollouts/${rollout.id}/devices/${fleet[0]!.id}/retry`, undefined, 409, "ROLLOUT_STATE"],
      ["DELETE", `/api/device-models/${modelId}/firmware/versions/${rollout.version_id}`, undefined, 409, "FIRMWARE_VERSION_IN_USE"],
      ["PUT", `/api/devices/${fleet[0]!.id}/firmware-pin`, { version_id: foreign.version_id }, 400, "VALIDATION_FAILED"],
      ["PUT", `/api/devices/${fleet[0]!.id}/firmware-pin`, { version_id: "1" }, 400, "VALIDATION_FAILED"],
    ];
    for (const [method, path, body, status, code] of cases) {
      const response = await server.admin(method, path, body);
      const envelope = await response.json();
      assert.deepEqual([response.status, envelope.code], [status, code], `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(envelope)}`);
      assert.equal(typeof envelope.error, "string");
    }
    assert.equal(JSON.stringify(await (await server.admin("GET", `/api/device-models/${modelId}/rollouts`)).json()), before);
    assert.equal((await deviceRow(server, fleet[0]!.id)).firmwarePinVersionId, null);
    // An immediate upload supersedes the rollout; rolling out the older 1.0.0 then is a downgrade, to be confirmed.
    await upload(server, modelId, "3.0.0");
    assert.equal((await rolloutOf(modelId, rollout.id)).state, "aborted");
    const refused = await server.admin("POST", `/api/device-models/${modelId}/rollouts`, { version_id: oldVersionId });
    assert.deepEqual([refused.status, (await refused.json()).code], [409, "DOWNGRADE_NOT_CONFIRMED"]);
    assert.equal((await server.admin("POST", `/api/device-models/${modelId}/rollouts`, { version_id: oldVersionId, confirm_downgrade: true })).status, 201);
  });

  it("a device PENDING in a credential rotation is not admitted until its rotation ends", async () => {
    const { modelId, fleet } = await fleetOn(2);
    await server.services.database.db.update(devices).set({ rotationState: "PENDING" }).where(eq(devices.id, fleet[0]!.id));
    const rollout = await rollOut(modelId, "2.0.0", { canary_device_ids: [fleet[0]!.id], soak_seconds: 0 });
    await step();
    assert.equal((await rolloutOf(modelId, rollout.id)).counts.admitted, 0);
    await server.services.database.db.update(devices).set({ rotationState: "OK" }).where(eq(devices.id, fleet[0]!.id));
    await step();
    assert.equal((await rolloutOf(modelId, rollout.id)).counts.admitted, 1);
  });
});
