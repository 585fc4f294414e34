/** CONTRACT §7: rotation and firmware notices, QoS 1, JSON with client_id, also on the legacy shared topics. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import mqtt, { type MqttClient } from "mqtt";
import { ADMIN_TOKEN } from "./support/app.ts";
import { createFleet } from "./support/fleet.ts";
import { readVector } from "./support/firmware-image.ts";
import { MQTT_TEST_URL, startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

type Message = { topic: string; qos: number; payload: Record<string, unknown> };
const blink = readVector("esp_idf_blink_esp32s2.bin");

describe("rotation and firmware notices on MQTT", () => {
  let server: TestServer;
  let subscriber: MqttClient;
  const received: Message[] = [];
  before(async () => {
    server = await startTestServer({ env: { MQTT_LEGACY_TOPICS: "true" } });
    subscriber = await mqtt.connectAsync(MQTT_TEST_URL, { clientId: `iot-test-notices-${process.pid}`, protocolVersion: 5 });
    subscriber.on("message", (topic, message, packet) => received.push({ topic, qos: packet.qos, payload: JSON.parse(message.toString("utf8")) }));
    await subscriber.subscribeAsync(["iotsupport/+/rotation", "iotsupport/+/firmware", "iotsupport/updates/provisioning", "iotsupport/updates/firmware"], { qos: 1 });
  });
  after(async () => {
    await subscriber.endAsync();
    await server.close();
  });

  const arrived = (topic: string, clientId: string) =>
    waitFor(`a message on ${topic}`, async () => received.find((m) => m.topic === topic && m.payload.client_id === clientId), 5_000);

  test("a rotation notice goes to the device's topic and the legacy provisioning topic", async () => {
    const [device] = await createFleet(server, 1, "notice_rot");
    await server.admin("POST", `/api/devices/${device!.id}/rotate`);
    for (const topic of [`iotsupport/${device!.clientId}/rotation`, "iotsupport/updates/provisioning"]) {
      const message = await arrived(topic, device!.clientId);
      assert.equal(message.qos, 1);
      assert.equal(message.payload.device_key, device!.key);
    }
  });

  test("a firmware upload notifies every device of the model with the new version", async () => {
    const fleet = await createFleet(server, 2, "notice_fw");
    const model = (await (await server.admin("GET", `/api/devices/${fleet[0]!.id}`)).json()).device_model.id;
    const upload = await fetch(`${server.url}/api/device-models/${model}/firmware?rollout=immediate`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
      body: blink,
    });
    assert.equal(upload.status, 200);
    for (const device of fleet) {
      for (const topic of [`iotsupport/${device.clientId}/firmware`, "iotsupport/updates/firmware"]) {
        const message = await arrived(topic, device.clientId);
        assert.equal(message.qos, 1);
        assert.equal(message.payload.firmware_version, "qa-test-v5.0-20220830-4-g4532e6");
      }
    }
  });
});
