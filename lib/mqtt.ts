import { randomBytes } from "node:crypto";
import type { Logger } from "./logger.ts";
import { errorMessage } from "./logger.ts";
import type { Metrics } from "./metrics.ts";

export type NoticeKind = "rotation" | "config" | "firmware";
export type MqttState = "connected" | "disconnected" | "disabled";

/** Device notices over MQTT (CONTRACT §7). publish() resolves true only once the broker acknowledged (PUBACK). */
export type Notifier = {
  state(): MqttState;
  /** Resolves true once connected, false after `timeoutMs` (or at once when MQTT is disabled). */
  waitUntilConnected(timeoutMs: number): Promise<boolean>;
  publish(kind: NoticeKind, clientId: string, payload: Record<string, unknown>): Promise<boolean>;
  close(): Promise<void>;
};

const LEGACY_TOPIC: Record<NoticeKind, string> = {
  rotation: "iotsupport/updates/provisioning",
  config: "iotsupport/updates/config",
  firmware: "iotsupport/updates/firmware",
};

const deviceTopic = (clientId: string, kind: NoticeKind) => `iotsupport/${clientId}/${kind}`;

export function disabledNotifier(): Notifier {
  return { state: () => "disabled", waitUntilConnected: async () => false, publish: async () => false, close: async () => {} };
}

/**
 * Connects to `url`. The MQTT client library is loaded here, not with the module: a process without a broker (a CLI
 * command without MQTT_URL) does not parse and run it at start.
 */
export async function createMqttNotifier(options: {
  url: string;
  username?: string;
  password?: string;
  legacyTopics: boolean;
  timeoutMs: number;
  /** Each process needs its own MQTT client id, or the broker disconnects the other one. */
  clientIdPrefix: string;
  metrics: Metrics;
  logger: Logger;
}): Promise<Notifier> {
  const { metrics, logger } = options;
  const { default: mqtt } = await import("mqtt");
  const client = mqtt.connect(options.url, {
    clientId: `${options.clientIdPrefix}-${process.pid}-${randomBytes(3).toString("hex")}`,
    username: options.username,
    password: options.password,
    protocolVersion: 5,
    reconnectPeriod: 2000,
    connectTimeout: options.timeoutMs,
  });
  const setGauge = () => metrics.mqttConnectionState.set(client.connected ? 1 : 0);
  setGauge();
  client.on("connect", () => {
    setGauge();
    logger.info("MQTT connected");
  });
  client.on("close", setGauge);
  client.on("offline", setGauge);
  client.on("error", (error) => logger.warn("MQTT error", { error: errorMessage(error) }));

  async function publishOne(topic: string, kind: NoticeKind, body: string): Promise<boolean> {
    // Never queue while offline: a notice reported as failed must not arrive later by surprise.
    if (!client.connected) {
      metrics.mqttPublishes.inc({ topic: kind, status: "error" });
      logger.warn("MQTT notice not sent: broker not connected", { topic });
      return false;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no PUBACK within ${options.timeoutMs} ms`)), options.timeoutMs);
    });
    try {
      await Promise.race([client.publishAsync(topic, body, { qos: 1 }), timeout]);
      metrics.mqttPublishes.inc({ topic: kind, status: "success" });
      return true;
    } catch (error) {
      metrics.mqttPublishes.inc({ topic: kind, status: "error" });
      logger.warn("MQTT notice failed", { topic, error: errorMessage(error) });
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    state: () => (client.connected ? "connected" : "disconnected"),
    waitUntilConnected(timeoutMs) {
      if (client.connected) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (connected: boolean) => {
          clearTimeout(timer);
          client.off("connect", onConnect);
          resolve(connected);
        };
        const onConnect = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        client.on("connect", onConnect);
      });
    },
    async publish(kind, clientId, payload) {
      const body = JSON.stringify({ client_id: clientId, ...payload });
      const delivered = await publishOne(deviceTopic(clientId, kind), kind, body);
      if (options.legacyTopics) await publishOne(LEGACY_TOPIC[kind], kind, body);
      return delivered;
    },
    close: () => client.endAsync(true).then(() => undefined),
  };
}
