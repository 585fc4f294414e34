import { DEVICE_CLIENT_ID } from "../identity/provider.ts";
import { sameSecret } from "../secrets.ts";
import type { BrokerPrincipal } from "./topic-rules.ts";

/** The server's own notifier signs in as this user, with a password made per process. */
export const SERVER_USERNAME = "iotsupport-server";
/** MQTT client ids the server's notifiers use; no device may take one (that would disconnect the server). */
const SERVER_CLIENT_ID_PREFIX = "iotsupport-";
const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;

export type BrokerLogin = { mqttClientId: string; username?: string; password?: Buffer; address: string | null };

/**
 * Who is connecting, or null to refuse. Devices sign in like the deployed firmware (the access token as username, any
 * password), or with their client id as username and an access token or their client secret as password.
 */
export function createBrokerAuthenticator(deps: {
  serverPassword: string;
  /** The client id the device token names; throws when the token is not a valid device token. */
  deviceOfToken(token: string): Promise<string>;
  secretMatches(clientId: string, secret: string, address: string | null): Promise<boolean>;
}) {
  const tokenDevice = (token: string) => deps.deviceOfToken(token).catch(() => null);

  return async function authenticate({ mqttClientId, username, password, address }: BrokerLogin): Promise<BrokerPrincipal | null> {
    const secret = password?.toString("utf8") ?? "";
    if (username === SERVER_USERNAME) return sameSecret(secret, deps.serverPassword) ? { kind: "server" } : null;
    if (!username || mqttClientId.startsWith(SERVER_CLIENT_ID_PREFIX)) return null;
    if (!DEVICE_CLIENT_ID.test(username)) {
      const clientId = await tokenDevice(username);
      return clientId ? { kind: "device", clientId } : null;
    }
    const allowed = JWT.test(secret)
      ? (await tokenDevice(secret)) === username
      : await deps.secretMatches(username, secret, address).catch(() => false);
    return allowed ? { kind: "device", clientId: username } : null;
  };
}
