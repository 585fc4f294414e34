import { createServer, type Server } from "node:net";
import { Aedes, type Client } from "aedes";
import type { Logger } from "../logger.ts";
import { errorMessage } from "../logger.ts";
import type { BrokerLogin } from "./authenticate.ts";
import { type BrokerPrincipal, mayPublish, maySubscribe } from "./topic-rules.ts";

/** What /api/health and the start log say about the embedded broker. */
export type EmbeddedBrokerStatus =
  | { state: "running"; address: string; port: number }
  | { state: "unavailable"; address: string; error: string };

export type EmbeddedBroker = { status: EmbeddedBrokerStatus; close(): Promise<void> };

/** Lets devices use topic aliases towards the broker; the firmware never needs more than a few. */
const TOPIC_ALIAS_MAXIMUM = 16;

/**
 * An MQTT 3.1.1 and 5 broker (aedes) inside the server process. When it cannot listen (port in use), the server
 * still starts: the returned broker is unavailable and says why.
 */
export async function startEmbeddedBroker(options: {
  host: string;
  port: number;
  authenticate(login: BrokerLogin): Promise<BrokerPrincipal | null>;
  logger: Logger;
}): Promise<EmbeddedBroker> {
  const { logger } = options;
  const principals = new WeakMap<Client, BrokerPrincipal>();
  const broker = await Aedes.createBroker({ topicAliasMaximum: TOPIC_ALIAS_MAXIMUM });
  broker.authenticate = (client, username, password, done) => {
    const address = "remoteAddress" in client.conn ? (client.conn.remoteAddress ?? null) : null;
    options.authenticate({ mqttClientId: client.id, username, password, address }).then(
      (principal) => {
        if (principal) principals.set(client, principal);
        else logger.info("MQTT client refused", { client: client.id, address });
        done(null, principal !== null);
      },
      (error: unknown) => {
        logger.warn("MQTT sign-in check failed", { client: client.id, error: errorMessage(error) });
        done(null, false);
      },
    );
  };
  broker.authorizeSubscribe = (client, subscription, done) => {
    const principal = principals.get(client);
    done(null, principal && maySubscribe(principal, subscription.topic) ? subscription : null);
  };
  broker.authorizePublish = (client, packet, done) => {
    // A will is checked like the client's own publish; a client-less one (left from a former session) is dropped.
    const principal = client ? principals.get(client) : undefined;
    done(principal && mayPublish(principal, packet.topic) ? null : new Error(`not allowed to publish on ${packet.topic}`));
  };

  const server = createServer(broker.handle);
  const address = `${options.host}:${options.port}`;
  const closeBroker = () => new Promise<void>((resolve) => broker.close(() => resolve()));
  try {
    await listen(server, options.host, options.port);
  } catch (error) {
    await closeBroker();
    const reason = (error as NodeJS.ErrnoException).code === "EADDRINUSE" ? `${address} is already in use (another MQTT broker?)` : errorMessage(error);
    return { status: { state: "unavailable", address, error: reason }, close: async () => {} };
  }
  const bound = server.address();
  const port = typeof bound === "object" && bound ? bound.port : options.port;
  return {
    status: { state: "running", address: `${options.host}:${port}`, port },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await closeBroker();
      await closed;
    },
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
