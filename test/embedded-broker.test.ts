/**
 * Issue 14 §1: without MQTT_URL the server runs its own broker (aedes 2 beta). Real MQTT clients against it: a client
 * configured like the deployed firmware (MQTT 5), a 3.1.1 client, refused sign-ins, the topic rules, a port in use,
 * EMBEDDED_MQTT=false, and the deployed firmware's rotation through it.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { createFleet, deviceRow } from "./support/fleet.ts";
import { clientCredentialsToken } from "./support/keycloak.ts";
import { createLegacyDevice, type LegacyDevice } from "./support/legacy-device.ts";
import { bareEnv, runEntry } from "./support/process.ts";
import { freePort, startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

const NOT_AUTHORIZED_V5 = 0x87;
const NOT_AUTHORIZED_V4 = 5;
/** How long a message that must never arrive is waited for. */
const QUIET_MS = 500;

const clients: MqttClient[] = [];
after(async () => {
  await Promise.all(clients.map((client) => client.endAsync(true)));
});

function connect(url: string, options: IClientOptions): Promise<MqttClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  clients.push(client);
  return new Promise((resolve, reject) => {
    client.once("connect", () => resolve(client));
    client.once("error", reject);
    client.once("close", () => reject(new Error("closed before CONNACK")));
  });
}

/** The CONNACK code of a refused sign-in. */
async function refusal(url: string, options: IClientOptions): Promise<number | undefined> {
  const error = await connect(url, options).then(
    () => assert.fail("the broker accepted the connection"),
    (e: Error & { code?: number }) => e,
  );
  return error.code;
}

/** Connected like the deployed firmware (CONTRACT §10): MQTT 5, the token as username, password "x", a retained will. */
let connections = 0;
const firmwareLike = (url: string, token: string, clientId: string, mqttClientId = `fw-${clientId}-${++connections}`) =>
  connect(url, {
    clientId: mqttClientId,
    protocolVersion: 5,
    username: token,
    password: "x",
    properties: { sessionExpiryInterval: 10, topicAliasMaximum: 2 },
    will: { topic: `iotsupport/${clientId}/state`, payload: Buffer.from("offline"), retain: true, qos: 1 },
  });

function matches(filter: string, topic: string): boolean {
  const [f, t] = [filter.split("/"), topic.split("/")];
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Collects what `client` receives live on `filter` (which must be granted); retained messages of earlier tests are left out. */
async function listen(client: MqttClient, filter: string) {
  const received: { topic: string; payload: string }[] = [];
  const granted = await client.subscribeAsync(filter, { qos: 1 });
  assert.equal(granted[0]!.qos, 1, `subscription to ${filter} granted`);
  client.on("message", (topic, payload, packet) => {
    if (matches(filter, topic) && !packet.retain) received.push({ topic, payload: payload.toString() });
  });
  return received;
}

const quiet = () => new Promise((resolve) => setTimeout(resolve, QUIET_MS));

describe("the embedded MQTT broker", () => {
  let server: TestServer;
  let url: string;
  let a: { id: number; clientId: string; secret: string };
  let b: { id: number; clientId: string; secret: string };
  const tokenOf = async (device: { clientId: string; secret: string }) =>
    (await clientCredentialsToken(server.services.identity.tokenUrl, device.clientId, device.secret)).accessToken!;

  before(async () => {
    server = await startTestServer({ env: { MQTT_URL: "", EMBEDDED_MQTT: "true", EMBEDDED_MQTT_HOST: "127.0.0.1", EMBEDDED_MQTT_PORT: "0" } });
    const status = server.services.embeddedBroker!.status;
    assert.equal(status.state, "running");
    url = `mqtt://127.0.0.1:${status.state === "running" ? status.port : 0}`;
    [a, b] = (await createFleet(server, 2)) as unknown as [typeof a, typeof b];
  });
  after(() => server.close());

  test("the server's notifier is connected; health and the provisioning package name the broker", async () => {
    assert.equal(server.services.notifier.state(), "connected");
    const health = await (await fetch(`${server.url}/api/health`)).json();
    assert.equal(health.mqtt, "connected");
    assert.equal(health.embedded_mqtt.state, "running");
    const pkg = await (await server.admin("GET", `/api/devices/${a.id}/provisioning`)).json();
    assert.equal(pkg.mqtt_url, url, "BASEURL's host, the broker's port");
  });

  test("a client like the firmware (MQTT 5) subscribes to its own and the shared topics and receives a rotation notice", async () => {
    const device = await firmwareLike(url, await tokenOf(a), a.clientId);
    const own = await listen(device, `iotsupport/${a.clientId}/#`);
    const shared = await listen(device, "iotsupport/updates/+");
    assert.equal(await server.services.notifier.publish("rotation", a.clientId, {}), true, "PUBACK from the embedded broker");
    await waitFor("the notice", async () => own.find((m) => m.topic === `iotsupport/${a.clientId}/rotation`));
    assert.deepEqual(JSON.parse(own.find((m) => m.topic.endsWith("/rotation"))!.payload), { client_id: a.clientId });
    assert.deepEqual(shared, [], "no legacy topics without MQTT_LEGACY_TOPICS");
  });

  test("what the firmware publishes is accepted (log topic, own state, own Home Assistant topics, a topic alias), and its retained will arrives", async () => {
    const token = await tokenOf(a);
    const observer = await firmwareLike(url, token, a.clientId);
    const seen = await listen(observer, `iotsupport/${a.clientId}/#`);
    const device = await firmwareLike(url, token, a.clientId);
    await device.publishAsync("iotsupport/logsink", JSON.stringify({ message: "boot", entity_id: "kitchen" }), { qos: 1 });
    await device.publishAsync(`iotsupport/${a.clientId}/logs`, "line", { qos: 1 });
    await device.publishAsync(`homeassistant/sensor/${a.clientId}/temperature/config`, "{}", { qos: 1, retain: true });
    await device.publishAsync(`homeassistant/${a.clientId}/state`, "online", { qos: 1 });
    await device.publishAsync(`iotsupport/${a.clientId}/state`, "online", { qos: 1, properties: { topicAlias: 1 } });
    await device.publishAsync("", "still online", { qos: 1, properties: { topicAlias: 1 } });
    await waitFor("the aliased state", async () => seen.filter((m) => m.topic === `iotsupport/${a.clientId}/state`).length === 2);
    (device as unknown as { stream: { destroy(): void } }).stream.destroy();
    await waitFor("the will", async () => seen.find((m) => m.payload === "offline"));
  });

  test("an MQTT 3.1.1 client signs in with client id and token, or client id and secret, and receives notices", async () => {
    for (const password of [await tokenOf(b), b.secret]) {
      const device = await connect(url, { protocolVersion: 4, clientId: `v4-${b.clientId}`, username: b.clientId, password });
      const own = await listen(device, `iotsupport/${b.clientId}/config`);
      assert.equal(await server.services.notifier.publish("config", b.clientId, {}), true);
      await waitFor("the config notice", async () => own.length === 1);
      await device.endAsync();
    }
  });

  test("anonymous, garbage, expired and mismatched credentials are refused (not authorized)", async () => {
    const issuer = server.services.builtinIssuer!;
    const realNow = Date.now;
    Date.now = () => realNow() - 24 * 3_600_000;
    const expired = (await issuer.issueToken(a.clientId, 1).finally(() => (Date.now = realNow))).access_token;
    const v5 = { protocolVersion: 5 as const, clientId: "intruder" };
    assert.equal(await refusal(url, v5), NOT_AUTHORIZED_V5, "anonymous");
    assert.equal(await refusal(url, { ...v5, username: "eyJhbGciOi.garbage.token", password: "x" }), NOT_AUTHORIZED_V5, "garbage token");
    assert.equal(await refusal(url, { ...v5, username: expired, password: "x" }), NOT_AUTHORIZED_V5, "expired token");
    assert.equal(await refusal(url, { ...v5, username: a.clientId, password: "wrong secret" }), NOT_AUTHORIZED_V5, "wrong secret");
    assert.equal(await refusal(url, { ...v5, username: a.clientId, password: await tokenOf(b) }), NOT_AUTHORIZED_V5, "another device's token");
    assert.equal(await refusal(url, { ...v5, username: "iotsupport-server", password: "guess" }), NOT_AUTHORIZED_V5, "the server's user");
    assert.equal(await refusal(url, { ...v5, clientId: "iotsupport-server-1-abcdef", username: await tokenOf(a), password: "x" }), NOT_AUTHORIZED_V5, "the server's client ids");
    assert.equal(await refusal(url, { protocolVersion: 4, clientId: "intruder" }), NOT_AUTHORIZED_V4, "anonymous 3.1.1");
  });

  test("a device cannot subscribe to another device's topics, nor publish there or on the server's notice topics", async () => {
    const tokenA = await tokenOf(a);
    const tokenB = await tokenOf(b);
    const intruder = await firmwareLike(url, tokenA, a.clientId);
    for (const filter of [`iotsupport/${b.clientId}/#`, "iotsupport/+/rotation", "#", `$share/g/iotsupport/${b.clientId}/rotation`, "iotsupport/logsink"]) {
      await assert.rejects(intruder.subscribeAsync(filter, { qos: 1 }), /Not authorized|Shared Subscriptions not supported/, `subscription to ${filter} refused`);
    }
    const victim = await firmwareLike(url, tokenB, b.clientId);
    const victimSees = [...(await listen(victim, `iotsupport/${b.clientId}/#`)), ...(await listen(victim, "iotsupport/updates/#"))];
    const ownObserver = await firmwareLike(url, tokenA, a.clientId);
    const ownSees = await listen(ownObserver, `iotsupport/${a.clientId}/#`);
    const forbidden = [
      `iotsupport/${b.clientId}/rotation`,
      `iotsupport/${b.clientId}/state`,
      "iotsupport/updates/provisioning",
      `iotsupport/${a.clientId}/rotation`,
      `iotsupport/${a.clientId}/config`,
      `iotsupport/${a.clientId}/firmware`,
      `homeassistant/${b.clientId}/state`,
      `homeassistant/${b.clientId}/${a.clientId}/config`,
    ];
    for (const topic of forbidden) {
      await assert.rejects(intruder.publishAsync(topic, JSON.stringify({ client_id: b.clientId }), { qos: 1 }), /Not authorized|135/i, topic);
      intruder.publish(topic, "qos 0", { qos: 0 });
    }
    await quiet();
    assert.deepEqual([...victimSees, ...ownSees], [], "nobody received them");

    const legacy = await connect(url, { protocolVersion: 4, clientId: `v4-intruder`, username: a.clientId, password: a.secret });
    legacy.publish(`iotsupport/${b.clientId}/rotation`, "{}", { qos: 1 });
    await waitFor("3.1.1: the broker drops the connection", async () => !legacy.connected);
    await quiet();
    assert.deepEqual(victimSees, []);
  });
});

describe("the embedded broker's settings", () => {
  test("EMBEDDED_MQTT=false: no broker, MQTT off", async () => {
    const port = await freePort();
    const server = await startTestServer({ env: { MQTT_URL: "", EMBEDDED_MQTT: "false", EMBEDDED_MQTT_HOST: "127.0.0.1", EMBEDDED_MQTT_PORT: String(port) } });
    try {
      assert.equal(server.services.embeddedBroker, null);
      assert.deepEqual(await (await fetch(`${server.url}/api/health`)).json(), { status: "healthy", database: "connected", mqtt: "disabled" });
      assert.equal(await refusal(`mqtt://127.0.0.1:${port}`, { clientId: "probe" }).catch((e: NodeJS.ErrnoException) => e.code), "ECONNREFUSED");
    } finally {
      await server.close();
    }
  });

  test("the port is in use: the server starts anyway, and its log and /api/health say so", async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    const cwd = mkdtempSync(join(tmpdir(), "iot-broker-taken-"));
    const child = runEntry("server.ts", [], { cwd, env: bareEnv({ PORT: "0", EMBEDDED_MQTT_HOST: "127.0.0.1", EMBEDDED_MQTT_PORT: String(port), LOG_FORMAT: "json" }) });
    try {
      const [line] = await child.waitForOutput(/[^\n]*Embedded MQTT broker not started[^\n]*/, 60_000);
      assert.match(line!, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
      const [, base] = await child.waitForOutput(/"url":"http:\/\/localhost:(\d+)"[^\n]*IoT Support Backend listening/, 60_000);
      const health = await (await fetch(`http://127.0.0.1:${base}/api/health`)).json();
      assert.equal(health.mqtt, "disabled");
      assert.deepEqual(health.embedded_mqtt, { state: "unavailable", address: `127.0.0.1:${port}`, error: `127.0.0.1:${port} is already in use (another MQTT broker?)` });
    } finally {
      child.kill();
      taken.close();
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe("rotation through the embedded broker", () => {
  let server: TestServer;
  let legacy: LegacyDevice | undefined;
  after(async () => {
    await legacy?.stop();
    await server?.close();
  });

  test("a device running the deployed firmware (legacy topics) rotates on the built-in provider", async () => {
    server = await startTestServer({ env: { MQTT_URL: "", MQTT_LEGACY_TOPICS: "true", EMBEDDED_MQTT: "true", EMBEDDED_MQTT_HOST: "127.0.0.1", EMBEDDED_MQTT_PORT: "0" } });
    const [device] = await createFleet(server, 1);
    const pkg = await (await server.admin("GET", `/api/devices/${device!.id}/provisioning`)).json();
    legacy = createLegacyDevice({ baseUrl: `${server.url}/`, tokenUrl: pkg.token_url, clientId: device!.clientId, secret: device!.secret, mqttUrl: pkg.mqtt_url });
    await legacy.untilRunning();
    assert.equal((await server.admin("POST", `/api/devices/${device!.id}/rotate`)).status, 200);
    await waitFor("the rotation to complete", async () => (await deviceRow(server, device!.id)).rotationState === "OK");
    assert.notEqual(legacy.secret, device!.secret, "the device holds a new secret");
    assert.equal((await legacy.freshToken()).ok, true);
    assert.equal(legacy.lockouts, 0);
  });
});
