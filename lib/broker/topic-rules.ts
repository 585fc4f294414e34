/**
 * Who may do what on the embedded broker. The server publishes the notices (CONTRACT §7); a device reads its own
 * topics and the shared notice topics, and writes only what the deployed firmware writes (CONTRACT §10): its logs,
 * its own state and its own Home Assistant discovery and state topics. Anything not allowed here is refused.
 */
export type BrokerPrincipal = { kind: "server" } | { kind: "device"; clientId: string };

export const LOG_TOPIC = "iotsupport/logsink";
const SHARED_NOTICES = "iotsupport/updates/";
/** The per-device topics a device writes itself; the others (rotation, config, firmware) are the server's notices. */
const DEVICE_WRITES = new Set(["logs", "state"]);
/** Home Assistant announces itself here (its birth message); devices re-send their discovery when it does. */
const HOME_ASSISTANT_STATUS = "homeassistant/status";
/** A Home Assistant component (sensor, binary_sensor, …). Never a client id, which always contains "-". */
const COMPONENT = /^[a-z_]+$/;

/** A filter strictly below `prefix`, so its wildcards can only widen it inside that prefix. */
const below = (filter: string, prefix: string) => filter.startsWith(prefix) && filter.length > prefix.length;

export function maySubscribe(principal: BrokerPrincipal, filter: string): boolean {
  if (principal.kind === "server") return true;
  return below(filter, `iotsupport/${principal.clientId}/`) || below(filter, SHARED_NOTICES) || filter === HOME_ASSISTANT_STATUS;
}

export function mayPublish(principal: BrokerPrincipal, topic: string): boolean {
  if (principal.kind === "server") return true;
  const levels = topic.split("/");
  if (levels.some((level) => level === "+" || level === "#")) return false;
  if (topic === LOG_TOPIC) return true;
  const [root, first, second] = levels;
  if (root === "iotsupport") return levels.length === 3 && first === principal.clientId && DEVICE_WRITES.has(second!);
  if (root === "homeassistant") {
    // `homeassistant/<client id>/…` or discovery's `homeassistant/<component>/<client id>/…`: its own only.
    return (levels.length >= 3 && first === principal.clientId) || (levels.length >= 4 && COMPONENT.test(first!) && second === principal.clientId);
  }
  return false;
}
