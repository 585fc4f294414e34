/**
 * The real server, run as a child process, that kills itself with SIGKILL at one chosen step (CRASH_AT), to prove
 * that a crash between any two steps of a rotation loses no device. Steps:
 *   identity:<operation>:before|after   around an identity-provider call (getSecret, regenerateSecret, setSecret…)
 *   response:<path>                     after the handler ran (its transaction committed), before the response is sent
 *   request:<path>                      before the handler runs
 *   publish:<kind>                      before an MQTT notice of that kind
 */
import { createServer } from "node:http";
import { createServerAdapter } from "@whatwg-node/server";
import { routes } from "../../functions/index.ts";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createApp } from "../../lib/http/app.ts";
import type { IdentityProvider } from "../../lib/identity/provider.ts";
import type { Notifier } from "../../lib/mqtt.ts";

const crashAt = process.env.CRASH_AT ?? "";
const crash = (step: string) => {
  if (step !== crashAt) return;
  process.stdout.write(`crashing at ${step}\n`);
  process.kill(process.pid, "SIGKILL");
};

const crashingIdentity = (real: IdentityProvider): IdentityProvider =>
  new Proxy(real, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        crash(`identity:${String(property)}:before`);
        const result = await value.apply(target, args);
        crash(`identity:${String(property)}:after`);
        return result;
      };
    },
  });

const config = loadConfig();
const services = await createServices(config, { identity: crashingIdentity, processName: "crashing-server" });
const notifier: Notifier = services.notifier;
const publish = notifier.publish.bind(notifier);
notifier.publish = async (kind, clientId, payload) => {
  crash(`publish:${kind}`);
  return publish(kind, clientId, payload);
};
const app = createApp(routes, services);
const server = createServer(
  createServerAdapter(async (request: Request) => {
    const path = new URL(request.url).pathname;
    crash(`request:${path}`);
    const response = await app(request);
    crash(`response:${path}`);
    return response;
  }),
);
server.listen(config.PORT, config.HOST, () => process.stdout.write(`listening on ${config.PORT}\n`));
