import mqtt, { type MqttClient } from "mqtt";
import { clientCredentialsToken } from "./keycloak.ts";
import { MQTT_TEST_URL } from "./server.ts";

/**
 * A device that behaves exactly like the deployed firmware (CONTRACT §10), which the rotation must never lock out:
 *
 * - it holds ONE secret; on a provisioning notice it GETs `api/iot/provisioning` with its cached token, refuses the
 *   package if any value is not a string, overwrites its secret and restarts at once; it never reads X-Rotation;
 * - boot: WiFi → token (client credentials, reused until 30 s before expiry) → GET `api/iot/config` → (enableOTA)
 *   GET `api/iot/firmware` → MQTT v5 with username = the access token, password "x", subscribed to the legacy
 *   shared topics, acting only on its own client_id; a failed boot step restarts it (after a short pause);
 * - config and firmware notices restart it.
 *
 * Faults are injected through `faults`; every token refused with 401 is counted in `lockouts`.
 */
export type LegacyDeviceFaults = {
  /** At the next restart, WiFi goes down until the test calls `wifiUp()`. */
  wifiDownAtNextRestart: boolean;
  /** Runs once at the next restart, before the device boots again (e.g. the test stops the backend). */
  atNextRestart: (() => Promise<void>) | null;
  /** Provisioning answers still to lose: the server processed the request, the device never stored the package. */
  provisioningAnswersToLose: number;
  /** Config requests still to lose: they never reach the server. */
  configRequestsToLose: number;
};

export type LegacyDevice = {
  clientId: string;
  /** The one secret it holds. */
  secret: string;
  faults: LegacyDeviceFaults;
  /** Token requests refused with 401: a device with only a refused secret is locked out. */
  lockouts: number;
  restarts: number;
  /** Whether it has booted through to MQTT since its last restart. */
  running: boolean;
  /** Resolves when it is running (booted through to MQTT). */
  untilRunning(timeoutMs?: number): Promise<void>;
  wifiUp(): void;
  /** A token from its secret, as at boot (does not use the cache). */
  freshToken(): Promise<{ ok: boolean; status: number; token?: string }>;
  stop(): Promise<void>;
};

const TOKEN_REUSE_MARGIN_MS = 30_000;
const RESTART_PAUSE_MS = 200;
const LEGACY_TOPICS = { config: "iotsupport/updates/config", firmware: "iotsupport/updates/firmware", provisioning: "iotsupport/updates/provisioning" };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createLegacyDevice(options: {
  /** The device's `base_url` with a trailing slash, e.g. http://127.0.0.1:3201/ (the firmware appends api/iot/...). */
  baseUrl: string;
  tokenUrl: string;
  clientId: string;
  secret: string;
  enableOta?: boolean;
  mqttUrl?: string;
}): LegacyDevice {
  let tokenUrl = options.tokenUrl;
  let baseUrl = options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`;
  let cachedToken: { value: string; reuseUntil: number } | null = null;
  let wifi = true;
  let client: MqttClient | null = null;
  let stopped = false;
  let booting: Promise<void> = Promise.resolve();

  const device: LegacyDevice = {
    clientId: options.clientId,
    secret: options.secret,
    faults: { wifiDownAtNextRestart: false, atNextRestart: null, provisioningAnswersToLose: 0, configRequestsToLose: 0 },
    lockouts: 0,
    restarts: 0,
    running: false,
    async untilRunning(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!device.running) {
        if (Date.now() > deadline) throw new Error(`${options.clientId} did not boot within ${timeoutMs} ms (lockouts: ${device.lockouts})`);
        await sleep(50);
      }
    },
    wifiUp: () => {
      wifi = true;
    },
    async freshToken() {
      const result = await clientCredentialsToken(tokenUrl, options.clientId, device.secret);
      return { ok: result.ok, status: result.status, token: result.accessToken };
    },
    async stop() {
      stopped = true;
      await booting;
      await client?.endAsync(true);
    },
  };

  function requireWifi() {
    if (!wifi) throw new Error("WiFi is down");
  }

  async function token(): Promise<string> {
    if (cachedToken && Date.now() < cachedToken.reuseUntil) return cachedToken.value;
    requireWifi();
    const result = await clientCredentialsToken(tokenUrl, options.clientId, device.secret);
    if (result.status === 401) device.lockouts++;
    if (!result.ok) throw new Error(`token refused: HTTP ${result.status}`);
    cachedToken = { value: result.accessToken!, reuseUntil: Date.now() + (result.expiresIn ?? 60) * 1000 - TOKEN_REUSE_MARGIN_MS };
    return result.accessToken!;
  }

  async function get(path: string): Promise<Response> {
    requireWifi();
    return fetch(`${baseUrl}${path}`, { headers: { authorization: `Bearer ${await token()}` }, signal: AbortSignal.timeout(10_000) });
  }

  async function bootOnce() {
    const bearer = await token();
    if (device.faults.configRequestsToLose > 0) {
      device.faults.configRequestsToLose--;
      throw new Error("the config request was lost");
    }
    const config = await get("api/iot/config");
    if (config.status !== 200) throw new Error(`config answered ${config.status}`);
    const { enableOTA } = (await config.json()) as { enableOTA?: unknown };
    // It reads the image header and aborts: for these tests only the authenticated request matters.
    if (enableOTA === true || options.enableOta) await (await get("api/iot/firmware")).body?.cancel();
    client = await connectMqtt(bearer);
  }

  function connectMqtt(bearer: string): Promise<MqttClient> {
    const connection = mqtt.connect(options.mqttUrl ?? MQTT_TEST_URL, {
      clientId: `legacy-${options.clientId}-${process.pid}`,
      protocolVersion: 5,
      username: bearer,
      password: "x",
      reconnectPeriod: 0,
      properties: { sessionExpiryInterval: 10, topicAliasMaximum: 2 },
      will: { topic: `homeassistant/${options.clientId}/state`, payload: Buffer.from("offline"), retain: true, qos: 1 },
    });
    return new Promise((resolve, reject) => {
      connection.on("error", (error) => {
        connection.end(true);
        reject(error);
      });
      connection.once("connect", () => {
        const topics = [LEGACY_TOPICS.config, LEGACY_TOPICS.provisioning, ...(options.enableOta ? [LEGACY_TOPICS.firmware] : [])];
        connection.subscribe(topics, { qos: 1 }, (error) => (error ? reject(error) : resolve(connection)));
      });
      connection.on("message", (topic, payload) => void onNotice(topic, payload));
      connection.once("close", () => {
        // The firmware restarts when MQTT drops.
        if (device.running && client === connection && !stopped) restart();
      });
    });
  }

  async function onNotice(topic: string, payload: Buffer) {
    let clientId: unknown;
    try {
      clientId = (JSON.parse(payload.toString()) as { client_id?: unknown }).client_id;
    } catch {
      return;
    }
    if (clientId !== options.clientId || !device.running) return;
    if (topic === LEGACY_TOPICS.provisioning) {
      try {
        await storeProvisioning();
      } catch {
        return; // a failed fetch changes nothing; the firmware waits for the next notice
      }
    }
    restart();
  }

  async function storeProvisioning() {
    const response = await get("api/iot/provisioning");
    if (response.status !== 200) throw new Error(`provisioning answered ${response.status}`);
    const pkg = (await response.json()) as Record<string, unknown>;
    if (device.faults.provisioningAnswersToLose > 0) {
      device.faults.provisioningAnswersToLose--;
      throw new Error("the provisioning answer was lost");
    }
    if (Object.values(pkg).some((value) => typeof value !== "string")) throw new Error("a package value is not a string");
    device.secret = pkg.client_secret as string;
    tokenUrl = pkg.token_url as string;
    baseUrl = pkg.base_url as string;
    if (!baseUrl.endsWith("/")) baseUrl += "/";
  }

  function restart() {
    device.running = false;
    device.restarts++;
    cachedToken = null;
    const previous = client;
    client = null;
    if (device.faults.wifiDownAtNextRestart) {
      device.faults.wifiDownAtNextRestart = false;
      wifi = false;
    }
    const hook = device.faults.atNextRestart;
    device.faults.atNextRestart = null;
    booting = booting.then(async () => {
      await previous?.endAsync(true);
      await hook?.();
      await boot();
    });
  }

  async function boot() {
    while (!stopped) {
      try {
        await bootOnce();
        device.running = true;
        return;
      } catch {
        cachedToken = null;
        await sleep(RESTART_PAUSE_MS);
      }
    }
  }

  booting = boot();
  return device;
}
