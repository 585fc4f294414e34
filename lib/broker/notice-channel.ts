import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import { createMqttNotifier, disabledNotifier, type Notifier } from "../mqtt.ts";
import { randomSecret } from "../secrets.ts";
import { createBrokerAuthenticator, SERVER_USERNAME } from "./authenticate.ts";
import type { EmbeddedBroker } from "./embedded-broker.ts";

export type NoticeChannel = {
  notifier: Notifier;
  /** Null with an external broker (MQTT_URL), with EMBEDDED_MQTT=false, and in the CLI. */
  embeddedBroker: EmbeddedBroker | null;
  /** The embedded broker as devices reach it (BASEURL's host), for provisioning packages; null when there is none. */
  embeddedBrokerUrl: string | null;
  /** How the server's own clients reach the broker (the device log subscriber uses it); null without one. */
  serverConnection: BrokerConnection | null;
};

export type BrokerConnection = { url: string; username?: string; password?: string };

/** Long enough for a loopback connection on a busy machine; the notifier keeps trying after it anyway. */
const LOOPBACK_CONNECT_MS = 3000;

/** Where the notices go: MQTT_URL's broker, else (in the server) a broker of our own, else nowhere. */
export async function openNoticeChannel(options: {
  config: Config;
  /** Only the server runs the embedded broker: a CLI command is gone before any device could connect. */
  runsEmbeddedBroker: boolean;
  processName: string;
  deviceOfToken(token: string): Promise<string>;
  secretMatches(clientId: string, secret: string, address: string | null): Promise<boolean>;
  metrics: Metrics;
  logger: Logger;
}): Promise<NoticeChannel> {
  const { config, metrics, logger } = options;
  const notifierTo = async (url: string, username?: string, password?: string) =>
    createMqttNotifier({
      url,
      username,
      password,
      legacyTopics: config.MQTT_LEGACY_TOPICS,
      timeoutMs: config.MQTT_PUBLISH_TIMEOUT_MS,
      clientIdPrefix: `iotsupport-${options.processName}`,
      metrics,
      logger,
    });
  if (config.MQTT_URL) {
    const serverConnection = { url: config.MQTT_URL, username: config.MQTT_USERNAME, password: config.MQTT_PASSWORD };
    return { notifier: await notifierTo(config.MQTT_URL, config.MQTT_USERNAME, config.MQTT_PASSWORD), embeddedBroker: null, embeddedBrokerUrl: null, serverConnection };
  }
  if (!config.EMBEDDED_MQTT || !options.runsEmbeddedBroker) return { notifier: disabledNotifier(), embeddedBroker: null, embeddedBrokerUrl: null, serverConnection: null };

  const serverPassword = randomSecret();
  // Loaded only here: the broker (aedes and its dependencies) is no part of a CLI command's or an MQTT_URL server's start.
  const { startEmbeddedBroker } = await import("./embedded-broker.ts");
  const embeddedBroker = await startEmbeddedBroker({
    host: config.EMBEDDED_MQTT_HOST,
    port: config.EMBEDDED_MQTT_PORT,
    authenticate: createBrokerAuthenticator({ serverPassword, deviceOfToken: options.deviceOfToken, secretMatches: options.secretMatches }),
    logger,
  });
  const { status } = embeddedBroker;
  if (status.state === "unavailable") {
    logger.warn(`Embedded MQTT broker not started: ${status.error}. MQTT is off: devices get no notices, so rotation starts no device. Set MQTT_URL to use that broker, or EMBEDDED_MQTT_PORT to pick another port.`);
    return { notifier: disabledNotifier(), embeddedBroker, embeddedBrokerUrl: null, serverConnection: null };
  }
  logger.info("Embedded MQTT broker listening", { address: status.address });
  const serverConnection = { url: `mqtt://${loopbackHost(config.EMBEDDED_MQTT_HOST)}:${status.port}`, username: SERVER_USERNAME, password: serverPassword };
  const notifier = await notifierTo(serverConnection.url, SERVER_USERNAME, serverPassword);
  await notifier.waitUntilConnected(LOOPBACK_CONNECT_MS);
  const deviceBase = config.DEVICE_BASEURL ?? config.BASEURL;
  return { notifier, embeddedBroker, embeddedBrokerUrl: deviceBase ? `mqtt://${new URL(deviceBase).hostname}:${status.port}` : null, serverConnection };
}

/** The address the server's own client dials: loopback for a wildcard address, else the one address listened on. */
function loopbackHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
