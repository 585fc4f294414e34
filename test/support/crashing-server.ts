/**
 * The real server, run as a child process, that kills itself with SIGKILL at one chosen step (CRASH_AT), to prove
 * that a crash between any two steps of a rotation loses no device; CRASH_SKIP=n lets the step pass n times first. Steps:
 *   identity:<operation>:before|after   around an identity-provider call (getSecret, rotateSecret, setSecret…)
 *   response:<path>                     after the handler ran (its transaction committed), before the response is sent
 *   request:<path>                      before the handler runs
 *   publish:<kind>                      before an MQTT notice of that kind
 *   expire:before|after                 around a rotation cycle's timeouts, when one is due (the server runs cycles
 *                                       itself with ROTATION_SCHEDULER=internal)
 */
import { createServer } from "node:http";
import { and, eq, lte } from "drizzle-orm";
import { devices } from "../../db/schema.ts";
import { routesFor } from "../../functions/index.ts";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createDispatcher } from "../../lib/http/app.ts";
import { nodeListener } from "../../lib/http/node-adapter.ts";
import type { IdentityProvider } from "../../lib/identity/provider.ts";
import type { Notifier } from "../../lib/mqtt.ts";
import { startInternalScheduler } from "../../lib/periodic-job.ts";

const crashAt = process.env.CRASH_AT ?? "";
// How often the step passes before the crash (e.g. devices' boot requests that come before the rotation).
let passes = Number(process.env.CRASH_SKIP ?? 0);
const crash = (step: string) => {
  if (step !== crashAt || passes-- > 0) return;
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
const { engine } = services.rotation;
const expireTimedOut = engine.expireTimedOut;
engine.expireTimedOut = async () => {
  const deadline = new Date(Date.now() - config.ROTATION_TIMEOUT_SECONDS * 1000);
  const due = await services.database.db
    .select({ id: devices.id })
    .from(devices)
    .where(and(eq(devices.rotationState, "PENDING"), lte(devices.rotationStartedAt, deadline)));
  if (due.length > 0) crash("expire:before");
  const result = await expireTimedOut();
  if (result.expired > 0) crash("expire:after");
  return result;
};
if (config.ROTATION_SCHEDULER === "internal") startInternalScheduler(services);
const dispatch = createDispatcher(routesFor(services), services);
const server = createServer(
  nodeListener(async (request, connection) => {
    const path = new URL(request.url).pathname;
    crash(`request:${path}`);
    const dispatched = await dispatch(request, connection);
    crash(`response:${path}`);
    return dispatched;
  }, services.logger),
);
server.listen(config.PORT, config.HOST, () => process.stdout.write(`listening on ${config.PORT}\n`));
