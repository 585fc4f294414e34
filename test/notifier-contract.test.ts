/** The real MQTT notifier against the Notifier contract, on the Mosquitto of the test machines (127.0.0.1:1883). */
import mqtt from "mqtt";
import { createMetrics } from "../lib/metrics.ts";
import { createMqttNotifier } from "../lib/mqtt.ts";
import { recordingLogger } from "./support/fakes/logger.ts";
import type { Notice } from "./support/fakes/notifier.ts";
import { describeNotifierContract } from "./support/notifier-contract.ts";
import { MQTT_TEST_URL } from "./support/server.ts";

const notifierFor = (url: string) =>
  createMqttNotifier({ url, legacyTopics: false, timeoutMs: 2_000, clientIdPrefix: "iot-test-contract", metrics: createMetrics(), logger: recordingLogger() });

describeNotifierContract("mqtt", async () => {
  const received: Notice[] = [];
  const subscriber = await mqtt.connectAsync(MQTT_TEST_URL, { clientId: `iot-test-notifier-contract-${process.pid}`, protocolVersion: 5 });
  subscriber.on("message", (topic, message) => {
    const [, clientId, kind] = topic.split("/");
    received.push({ kind: kind as Notice["kind"], clientId: clientId!, payload: JSON.parse(message.toString("utf8")) });
  });
  await subscriber.subscribeAsync("iotsupport/+/+", { qos: 1 });
  const notifier = await notifierFor(MQTT_TEST_URL);
  return {
    notifier,
    received: () => received,
    // Port 1 has no broker: connecting is refused at once.
    unreachable: async () => notifierFor("mqtt://127.0.0.1:1"),
    async close() {
      await notifier.close();
      await subscriber.endAsync();
    },
  };
});
