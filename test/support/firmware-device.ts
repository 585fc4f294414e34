/**
 * A device's firmware update as the deployed firmware does it (CONTRACT §10): on every boot a token, GET
 * api/iot/config, then GET api/iot/firmware, whose first block holds the image's version: the download is aborted
 * when that is the running version or the last invalid one, else the whole image is written and the device
 * restarts. Faults: the new image fails and the bootloader rolls back to the old one, marking the new one invalid
 * (`rollback`) or not (`rollback-unmarked`, so the device downloads it again: a loop). With `reports` it also says
 * what it runs in the X-Firmware-Version and X-Ota-State headers (docs/device-protocol.md).
 */
export type FirmwareFault = "none" | "rollback" | "rollback-unmarked";

/** esp_app_desc_t.version: 32 bytes at offset 16 of the descriptor, which follows the 24-byte image header and 8-byte segment header. */
const VERSION_AT = 24 + 8 + 16;
const VERSION_END = VERSION_AT + 32;

export type FirmwareDevice = {
  clientId: string;
  running: string;
  lastInvalid: string | null;
  /** Boots (and restarts after each written image, up to `maxRestarts`); returns how many images it wrote. */
  boot(maxRestarts?: number): Promise<number>;
  /**
   * Stands in for the MQTT firmware notice (its delivery is tested elsewhere): when its target (GET
   * iot/firmware-version) is neither what it runs nor its last invalid version, it restarts, as a notice makes it.
   */
  notified(maxRestarts?: number): Promise<number>;
};

export function createFirmwareDevice(options: {
  baseUrl: string;
  tokenUrl: string;
  clientId: string;
  secret: string;
  running: string;
  reports?: boolean;
  fault?: FirmwareFault;
}): FirmwareDevice {
  const fault = options.fault ?? "none";
  let otaState: string | null = null;

  async function token(): Promise<string> {
    const body = new URLSearchParams({ grant_type: "client_credentials", client_id: options.clientId, client_secret: options.secret });
    const response = await fetch(options.tokenUrl, { method: "POST", body });
    if (response.status !== 200) throw new Error(`token: ${response.status} ${await response.text()}`);
    return (await response.json()).access_token;
  }

  const device: FirmwareDevice = {
    clientId: options.clientId,
    running: options.running,
    lastInvalid: null,
    async boot(maxRestarts = 3) {
      let written = 0;
      for (let boot = 0; boot <= maxRestarts; boot++) {
        const headers: Record<string, string> = { authorization: `Bearer ${await token()}` };
        if (options.reports) {
          headers["x-firmware-version"] = device.running;
          if (otaState) headers["x-ota-state"] = otaState;
        }
        const config = await fetch(`${options.baseUrl}/api/iot/config`, { headers });
        if (config.status !== 200) throw new Error(`config: ${config.status}`);
        await config.arrayBuffer();
        const image = await fetch(`${options.baseUrl}/api/iot/firmware`, { headers });
        if (image.status !== 200 || !image.body) {
          await image.body?.cancel();
          return written;
        }
        const reader = image.body.getReader();
        let head = new Uint8Array(0);
        while (head.length < VERSION_END) {
          const { value, done } = await reader.read();
          if (done) break;
          head = new Uint8Array([...head, ...value]);
        }
        const version = new TextDecoder().decode(head.subarray(VERSION_AT, VERSION_END)).replace(/\0.*$/s, "");
        if (version === device.running || version === device.lastInvalid) {
          await reader.cancel();
          return written;
        }
        while (!(await reader.read()).done);
        written++;
        // Restart into the new image, or back into the old one when it fails.
        if (fault === "none") {
          device.running = version;
          otaState = "valid";
        } else {
          otaState = "rolled_back";
          if (fault === "rollback") device.lastInvalid = version;
        }
      }
      return written;
    },
    async notified(maxRestarts = 3) {
      const response = await fetch(`${options.baseUrl}/api/iot/firmware-version`, { headers: { authorization: `Bearer ${await token()}` } });
      const { firmware_version: target } = await response.json();
      return target === null || target === device.running || target === device.lastInvalid ? 0 : device.boot(maxRestarts);
    },
  };
  return device;
}
