/** CONTRACT §2/§7: a config change is announced on MQTT (QoS 1, after the commit), received by a real subscriber. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import mqtt, { type MqttClient } from "mqtt";
import { createTestApp, type TestApp } from "./support/app.ts";

const BROKER = "mqtt://127.0.0.1:1883";
const LEGACY_TOPIC = "iotsupport/updates/config";

type Received = { topic: string; qos: number; payload: Record<string, unknown>; configInDb: Promise<string> };

/** A real subscriber on the broker; each message is recorded with the device's config as the DB has it on arrival. */
async function subscribe(app: () => TestApp, deviceId: () => number | undefined) {
  const client: MqttClient = await mqtt.connectAsync(BROKER, { clientId: `iot-test-sub-${process.pid}-${Math.random().toString(36).slice(2)}`, protocolVersion: 5 });
  const received: Received[] = [];
  client.on("message", (topic, message, packet) => {
    const id = deviceId();
    received.push({
      topic,
      qos: packet.qos,
      payload: JSON.parse(message.toString("utf8")),
      // Read in the handler: the notice must only go out once the new config is committed.
      configInDb: id === undefined ? Promise.resolve("") : app().services.devices.get(id).then((device) => device.config),
    });
  });
  await client.subscribeAsync(["iotsupport/+/config", LEGACY_TOPIC], { qos: 1 });
  return { client, received };
}

async function waitFor<T>(find: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) assert.fail(`nothing arrived within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function waitForConnected(app: TestApp) {
  const deadline = Date.now() + 10_000;
  while (app.services.notifier.state() !== "connected") {
    if (Date.now() > deadline) assert.fail("the backend did not connect to the broker");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const publishCount = async (app: TestApp, status: "success" | "error") => {
  const text = await (await app.call("GET", "/metrics", { token: null })).text();
  const line = text.split("\n").find((l) => l.startsWith(`iot_mqtt_publish_total{topic="config",status="${status}"} `));
  return line ? Number(line.split(" ").pop()) : 0;
};

async function createDevice(app: TestApp, code: string) {
  const model = await (await app.call("POST", "/api/device-models", { body: { code, name: code } })).json();
  const response = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: '{"deviceName": "before"}' } });
  assert.equal(response.status, 201);
  return (await response.json()) as { id: number; key: string; client_id: string };
}

for (const legacy of [false, true]) {
  describe(`config notice with MQTT_LEGACY_TOPICS=${legacy}`, () => {
    let app: TestApp;
    let device: { id: number; key: string; client_id: string } | undefined;
    let subscriber: Awaited<ReturnType<typeof subscribe>>;

    before(async () => {
      app = await createTestApp({ env: { MQTT_URL: BROKER, MQTT_LEGACY_TOPICS: String(legacy) } });
      await waitForConnected(app);
      subscriber = await subscribe(() => app, () => device?.id);
      device = await createDevice(app, legacy ? "legacy_notice" : "notice");
    });
    after(async () => {
      await subscriber?.client.endAsync();
      await app?.close();
    });

    const ours = (topic: string) => () =>
      subscriber.received.find((message) => message.topic === topic && message.payload.client_id === device!.client_id);

    test("PUT publishes QoS 1 on iotsupport/<client_id>/config after the commit", async () => {
      const config = '{"deviceName": "after", "interval": 60}';
      const success = await publishCount(app, "success");
      const response = await app.call("PUT", `/api/devices/${device!.id}`, { body: { config } });
      assert.equal(response.status, 200);

      const message = await waitFor(ours(`iotsupport/${device!.client_id}/config`));
      assert.equal(message.qos, 1);
      assert.equal(message.payload.client_id, device!.client_id);
      assert.equal(await message.configInDb, config, "the database already had the new config when the notice arrived");
      assert.equal(await publishCount(app, "success"), success + (legacy ? 2 : 1));

      if (legacy) {
        const legacyMessage = await waitFor(ours(LEGACY_TOPIC));
        assert.equal(legacyMessage.qos, 1);
        assert.deepEqual(legacyMessage.payload, message.payload, "the same payload on the legacy topic");
      } else {
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(ours(LEGACY_TOPIC)(), undefined, "no legacy topic unless MQTT_LEGACY_TOPICS=true");
      }
    });

    test("a rejected PUT publishes nothing", async () => {
      const before = subscriber.received.length;
      const response = await app.call("PUT", `/api/devices/${device!.id}`, { body: { config: "{broken" } });
      assert.equal(response.status, 400);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(subscriber.received.slice(before).filter((m) => m.payload.client_id === device!.client_id), []);
    });
  });
}

describe("config notice with the broker unreachable", () => {
  let app: TestApp;
  before(async () => {
    app = await createTestApp({ env: { MQTT_URL: "mqtt://127.0.0.1:1" } });
  });
  after(() => app.close());

  test("the PUT still succeeds quickly and the failed notice is counted", async () => {
    const device = await createDevice(app, "unreachable");
    const errors = await publishCount(app, "error");
    const started = performance.now();
    const response = await app.call("PUT", `/api/devices/${device.id}`, { body: { config: '{"deviceName": "offline"}' } });
    const elapsed = performance.now() - started;
    assert.equal(response.status, 200);
    assert.equal((await response.json()).device_name, "offline");
    const timeout = app.services.config.MQTT_PUBLISH_TIMEOUT_MS;
    assert.ok(elapsed < timeout, `PUT took ${Math.round(elapsed)} ms; the publish timeout is ${timeout} ms`);
    assert.equal(await publishCount(app, "error"), errors + 1);
    assert.equal((await (await app.call("GET", `/api/devices/${device.id}`)).json()).device_name, "offline");
  });
});
