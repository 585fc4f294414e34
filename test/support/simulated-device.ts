import mqtt from "mqtt";
import { MQTT_TEST_URL } from "./server.ts";
import { clientCredentialsToken } from "./keycloak.ts";

/**
 * A device that follows the rotation protocol of docs/device-protocol.md: on a notice it fetches /iot/provisioning with a token
 * from its current secret, proves the new secret by getting a token with it, then calls /iot/config with that token.
 * It keeps the old secret until the acknowledgement succeeded, and tries the new one first and the old one second,
 * so a lost response, a crash or a restored secret never locks it out.
 */
export type Misbehaviour = "none" | "offline" | "lose-provisioning-response" | "never-acknowledge";

export type SimulatedDevice = {
  clientId: string;
  /** The confirmed secret (acknowledged, or never rotated). */
  secret: string;
  /** A new secret received but not yet acknowledged. */
  candidate: string | null;
  rotations: number;
  /** Resolves once the device is subscribed (immediately for an offline device). */
  ready: Promise<void>;
  tokenFor(secret?: string): Promise<{ ok: boolean; status: number; token?: string }>;
  /** What firmware does at boot: a token from the candidate secret if it works, else from the confirmed one. */
  authenticate(): Promise<{ ok: boolean; status: number; token?: string }>;
  /** Runs the device side of a rotation, as on a notice. */
  rotate(): Promise<void>;
  /** Resolves when the rotations triggered by notices so far have finished (or failed). */
  settled(): Promise<void>;
  stop(): Promise<void>;
  /** Drops the broker connection at once, without waiting for a rotation under way. */
  disconnect(): Promise<void>;
};

export function createSimulatedDevice(options: {
  baseUrl: string;
  tokenUrl: string;
  clientId: string;
  secret: string;
  misbehaviour?: Misbehaviour;
  mqttUrl?: string;
}): SimulatedDevice {
  const misbehaviour = options.misbehaviour ?? "none";
  let tokenUrl = options.tokenUrl;
  let busy: Promise<void> = Promise.resolve();

  const device: SimulatedDevice = {
    clientId: options.clientId,
    secret: options.secret,
    candidate: null,
    rotations: 0,
    ready: Promise.resolve(),
    async tokenFor(secret = device.secret) {
      const result = await clientCredentialsToken(tokenUrl, options.clientId, secret);
      return { ok: result.ok, status: result.status, token: result.accessToken };
    },
    async authenticate() {
      if (device.candidate) {
        const result = await device.tokenFor(device.candidate);
        if (result.ok) return result;
      }
      return device.tokenFor(device.secret);
    },
    async rotate() {
      const oldToken = await device.authenticate();
      if (!oldToken.ok) throw new Error(`${options.clientId}: no secret it holds works (HTTP ${oldToken.status})`);
      const provisioning = await fetch(`${options.baseUrl}/iot/provisioning`, { headers: { authorization: `Bearer ${oldToken.token}` } });
      if (!provisioning.ok) throw new Error(`${options.clientId}: provisioning answered ${provisioning.status}`);
      const { client_secret: newSecret, token_url: newTokenUrl } = (await provisioning.json()) as { client_secret: string; token_url: string };
      if (misbehaviour === "lose-provisioning-response") return;
      tokenUrl = newTokenUrl;
      // Stored before it is tried (docs/device-protocol.md, step 3): a token request cut off after the backend saw the
      // new secret work still leaves the device holding it.
      device.candidate = newSecret;
      const newToken = await device.tokenFor(newSecret);
      if (!newToken.ok || misbehaviour === "never-acknowledge") return; // keep both, the candidate tried first
      const config = await fetch(`${options.baseUrl}/iot/config`, { headers: { authorization: `Bearer ${newToken.token}` } });
      await config.body?.cancel();
      // Only a completed acknowledgement makes the old secret safe to forget: a timeout may have restored it.
      if (config.headers.get("x-rotation") !== "completed") return;
      device.secret = newSecret;
      device.candidate = null;
      device.rotations++;
    },
    settled: () => busy,
    async stop() {},
    async disconnect() {},
  };

  if (misbehaviour === "offline") return device;

  const client = mqtt.connect(options.mqttUrl ?? MQTT_TEST_URL, { clientId: `sim-${options.clientId}-${process.pid}`, protocolVersion: 5 });
  device.ready = new Promise((resolve, reject) => {
    client.once("error", reject);
    client.once("connect", () => client.subscribe(`iotsupport/${options.clientId}/rotation`, { qos: 1 }, (error) => (error ? reject(error) : resolve())));
  });
  client.on("message", () => {
    busy = busy.then(() => device.rotate()).catch(() => {});
  });
  device.stop = async () => {
    await busy;
    await client.endAsync();
  };
  device.disconnect = () => client.endAsync(true);
  return device;
}
