/**
 * The provisioning package (CONTRACT §4): everything a device needs to join, as a flat JSON object or as an
 * ESP-IDF NVS partition image (namespace `prov`, one string entry per key, in the same order).
 */
import { z } from "zod";
import type { Config } from "../config.ts";
import { badRequest } from "../errors.ts";
import { errorMessage } from "../logger.ts";
import { buildNvsImage } from "./nvs.ts";

export const provisioningPackageSchema = z
  .object({
    device_key: z.string(),
    client_id: z.string(),
    client_secret: z.string(),
    token_url: z.string().meta({ description: "OAuth2 token endpoint (client-credentials grant)" }),
    base_url: z.string().meta({ description: "The device appends /iot/... to it" }),
    mqtt_url: z.string(),
    wifi_ssid: z.string(),
    wifi_password: z.string(),
  })
  .meta({ id: "ProvisioningPackage" });

export type ProvisioningPackage = z.infer<typeof provisioningPackageSchema>;

/** The keys in package order (also the order of the NVS entries). */
export const PACKAGE_KEYS = Object.keys(provisioningPackageSchema.shape) as (keyof ProvisioningPackage)[];

const NVS_NAMESPACE = "prov";

type ProvisioningSettings = Pick<ProvisioningPackage, "base_url" | "mqtt_url" | "wifi_ssid" | "wifi_password">;
type SettingsSource = Pick<Config, "BASEURL" | "DEVICE_BASEURL" | "MQTT_URL" | "DEVICE_MQTT_URL" | "WIFI_SSID" | "WIFI_PASSWORD"> & {
  /** The embedded broker as devices reach it, when the server runs one. */
  embeddedBrokerUrl?: string;
};

/**
 * The package's settings from the configuration; throws 400 PROVISIONING_NOT_CONFIGURED naming every missing
 * setting, so a package never carries a null.
 */
export function provisioningSettings(config: SettingsSource): ProvisioningSettings {
  const sources = [
    { key: "base_url", setting: "BASEURL (or DEVICE_BASEURL)", value: config.DEVICE_BASEURL ?? config.BASEURL },
    { key: "mqtt_url", setting: "MQTT_URL (or DEVICE_MQTT_URL)", value: config.DEVICE_MQTT_URL ?? config.MQTT_URL ?? config.embeddedBrokerUrl },
    { key: "wifi_ssid", setting: "WIFI_SSID", value: config.WIFI_SSID },
    { key: "wifi_password", setting: "WIFI_PASSWORD", value: config.WIFI_PASSWORD },
  ] as const;
  const missing = sources.filter((s) => !s.value).map((s) => s.setting);
  if (missing.length > 0) {
    throw badRequest(
      `Provisioning needs ${missing.length === 1 ? "this setting" : "these settings"}: ${missing.join(", ")}.`,
      "PROVISIONING_NOT_CONFIGURED",
      { missing_settings: missing },
    );
  }
  return Object.fromEntries(sources.map((s) => [s.key, s.value])) as ProvisioningSettings;
}

/**
 * Builds the package. The configuration is checked first and only then is `readSecret` called, so a
 * misconfigured server never reads (or, during a rotation, issues) a secret.
 */
export async function buildProvisioningPackage(input: {
  config: SettingsSource;
  tokenUrl: string;
  device: { key: string; clientId: string };
  readSecret: () => Promise<string>;
}): Promise<ProvisioningPackage> {
  const settings = provisioningSettings(input.config);
  const secret = await input.readSecret();
  return {
    device_key: input.device.key,
    client_id: input.device.clientId,
    client_secret: secret,
    token_url: input.tokenUrl,
    base_url: settings.base_url,
    mqtt_url: settings.mqtt_url,
    wifi_ssid: settings.wifi_ssid,
    wifi_password: settings.wifi_password,
  };
}

/** The package as an NVS partition image of `partitionSize` bytes; a package that does not fit is a 400. */
export function provisioningNvsImage(pkg: ProvisioningPackage, partitionSize: number): Uint8Array<ArrayBuffer> {
  const entries = PACKAGE_KEYS.map((key) => ({ key, value: pkg[key] }));
  try {
    return buildNvsImage({ namespaces: [{ name: NVS_NAMESPACE, entries }] }, partitionSize);
  } catch (error) {
    // nvs.ts names keys and sizes in its messages, never values.
    throw badRequest(`The NVS image cannot be built: ${errorMessage(error)}.`, "NVS_IMAGE_FAILED");
  }
}
