/**
 * The MQTT side of device logs: one client with a persistent session (clean start off, its own client id) subscribed
 * at QoS 1 to the shared log topic and to every device's own log topic. A message is acknowledged (PUBACK) once its
 * lines are in the writer's buffer; while the buffer is full the acknowledgement waits, and the broker keeps the rest
 * of the session's messages, so a database outage costs no line the broker delivered.
 */
import mqtt from "mqtt";
import { LOG_TOPIC } from "../broker/topic-rules.ts";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { errorMessage, type Logger } from "../logger.ts";

export type LogSinkOptions = {
  url: string;
  username?: string;
  password?: string;
  clientId: string;
  /** MQTT 5 shared subscription group: replicas share the messages instead of each getting all of them. */
  shareGroup?: string;
  sessionExpirySeconds: number;
  accept(payload: string, deviceClientId: string | null): Promise<unknown>;
  logger: Logger;
};

export type LogSink = { connected(): boolean; close(): Promise<void> };

const DEVICE_LOG_TOPIC = /^iotsupport\/([^/]+)\/logs$/;
const MAX_RETRY_MS = 5_000;

export function startLogSink(options: LogSinkOptions): LogSink {
  const { logger } = options;
  let closing = false;
  const share = (topic: string) => (options.shareGroup ? `$share/${options.shareGroup}/${topic}` : topic);
  const client = mqtt.connect(options.url, {
    clientId: options.clientId,
    username: options.username,
    password: options.password,
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: options.sessionExpirySeconds },
    reconnectPeriod: 2000,
  });
  client.handleMessage = (packet, done) => {
    const match = DEVICE_LOG_TOPIC.exec(packet.topic);
    const payload = typeof packet.payload === "string" ? packet.payload : packet.payload.toString("utf8");
    void (async () => {
      for (let attempt = 0; !closing; attempt++) {
        try {
          await options.accept(payload, match ? match[1]! : null);
          break;
        } catch (error) {
          // The database is out (finding the device needs it): not acknowledged yet, tried again.
          if (isDatabaseUnavailable(error)) {
            await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** attempt, MAX_RETRY_MS)));
            continue;
          }
          // A payload we cannot take is not worth redelivering forever: acknowledged, and said.
          logger.warn("Device log message skipped", { topic: packet.topic, error: errorMessage(error) });
          break;
        }
      }
      // Closing mid-retry: unacknowledged, so the broker delivers it again to the next session.
      if (!closing) done();
    })();
  };
  client.on("connect", (connack) => {
    logger.info("Device log sink connected", { session_present: connack.sessionPresent });
    client.subscribe([share(LOG_TOPIC), share("iotsupport/+/logs")], { qos: 1 }, (error) => {
      if (error) logger.warn("Device log sink could not subscribe", { error: errorMessage(error) });
    });
  });
  client.on("error", (error) => logger.warn("Device log sink MQTT error", { error: errorMessage(error) }));
  return {
    connected: () => client.connected,
    close: () => {
      closing = true;
      return client.endAsync(true).then(() => undefined);
    },
  };
}
