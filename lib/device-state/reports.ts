/**
 * What a device may report about itself (docs/device-protocol.md): the JSON body of POST /iot/state and the optional
 * X-Firmware-Version, X-Firmware-Elf-Sha256 and X-Ota-State headers of any device request, checked by the same rules.
 */
import { z } from "zod";
import { otaStates, type StateReport } from "../../db/schema.ts";

/** esp_app_desc_t.version: up to 31 bytes and a NUL; printable ASCII so a header can carry it too. */
const versionString = z
  .string()
  .max(31, "must be 1 to 31 printable ASCII characters")
  .regex(/^[\x20-\x7e]{1,31}$/, "must be 1 to 31 printable ASCII characters")
  .meta({ example: "v1.4.2" });
const hexSha256 = z
  .string()
  .length(64, "must be 64 hexadecimal digits")
  .regex(/^[0-9a-fA-F]{64}$/, "must be 64 hexadecimal digits")
  .transform((hex) => hex.toLowerCase());
const otaState = z.enum(otaStates);
const uint32 = z.number().int().min(0).max(4_294_967_295);

export const stateReportBody = z
  .object({
    firmware_version: versionString.optional().meta({ description: "esp_app_get_description()->version" }),
    elf_sha256: hexSha256.optional().meta({ description: "esp_app_get_description()->app_elf_sha256, as hex" }),
    ota_state: otaState.optional().meta({ description: "esp_ota_get_state_partition() of the running partition" }),
    last_invalid_version: versionString.optional().meta({ description: "The version in esp_ota_get_last_invalid_partition()" }),
    reset_reason: z
      .string()
      .regex(/^[A-Za-z0-9_]{1,32}$/, "must be 1 to 32 letters, digits or underscores")
      .optional()
      .meta({ description: "esp_reset_reason(), e.g. ESP_RST_PANIC", example: "ESP_RST_POWERON" }),
    uptime_s: uint32.optional().meta({ description: "esp_timer_get_time() / 1000000" }),
    free_heap: uint32.optional().meta({ description: "esp_get_free_heap_size()" }),
    rssi: z.number().int().min(-128).max(127).optional().meta({ description: "esp_wifi_sta_get_ap_info() → rssi (dBm)" }),
  })
  .meta({ id: "DeviceStateReport", description: "Every field is optional; fields not listed here are ignored (newer firmware may send more)." });

/** What the headers of a device request reported; `bad` names the headers that were present but malformed. */
export type HeaderReport = { report: Pick<StateReport, "firmware_version" | "elf_sha256" | "ota_state">; bad: string[] };

const HEADERS = [
  ["x-firmware-version", "firmware_version", versionString],
  ["x-firmware-elf-sha256", "elf_sha256", hexSha256],
  ["x-ota-state", "ota_state", otaState],
] as const;

/** A malformed optional header is left out (a device is never refused for one) and named in `bad`. */
export function readHeaderReport(headers: Headers): HeaderReport {
  const result: HeaderReport = { report: {}, bad: [] };
  for (const [name, field, schema] of HEADERS) {
    const value = headers.get(name);
    if (value === null) continue;
    const parsed = schema.safeParse(value.trim());
    if (parsed.success) Object.assign(result.report, { [field]: parsed.data });
    else result.bad.push(name);
  }
  return result;
}

/** The device columns a POST /iot/state report sets: what it says, and that the device was seen now. */
export const reportedColumns = (report: StateReport, now: Date) => ({
  ...(report.firmware_version !== undefined && { reportedFirmwareVersion: report.firmware_version }),
  ...(report.elf_sha256 !== undefined && { reportedElfSha256: report.elf_sha256 }),
  ...(report.ota_state !== undefined && { otaState: report.ota_state }),
  lastStateReport: report,
  reportedAt: now,
  lastSeenAt: now,
});
