import type { Config } from "../config.ts";
import type { DeviceService } from "../devices.ts";
import { conflict } from "../errors.ts";
import type { DevicePrincipal } from "../identity/principal.ts";
import type { Logger } from "../logger.ts";
import { type IdentityProvider, isClientNotFound } from "../identity/provider.ts";
import type { RotationService } from "../rotation/service.ts";
import { buildProvisioningPackage, type ProvisioningPackage } from "./package.ts";

const clientMissing = (clientId: string) =>
  conflict(
    `The OAuth2 client ${clientId} of this device is missing in the identity provider; recreate it with keycloak-sync first.`,
    "CLIENT_MISSING",
  );

/** The provisioning package of a device, for the admin who downloads it and for the device itself. */
export function createProvisioningService(deps: {
  config: Config;
  /** The embedded broker as devices reach it: the package's mqtt_url when neither DEVICE_MQTT_URL nor MQTT_URL is set. */
  embeddedBrokerUrl?: string | null;
  identity: IdentityProvider;
  devices: Pick<DeviceService, "findWithModel">;
  rotation: Pick<RotationService, "issueProvisioningSecret">;
}) {
  const { identity } = deps;
  const config = { ...deps.config, embeddedBrokerUrl: deps.embeddedBrokerUrl ?? undefined };
  const packageOf = async (device: { key: string; clientId: string }, readSecret: () => Promise<string>) =>
    buildProvisioningPackage({ config, tokenUrl: await identity.deviceTokenUrl(), device, readSecret });

  return {
    /** An admin's download: the device's current secret; reading it never changes it. */
    async forAdmin(deviceId: number): Promise<ProvisioningPackage> {
      const { device } = await deps.devices.findWithModel(deviceId);
      return packageOf(device, () =>
        identity.getSecret(device.clientId).catch((error: unknown) => {
          throw isClientNotFound(error) ? clientMissing(device.clientId) : error;
        }),
      );
    },

    /** The device's own request: during its rotation this issues (or hands out again) the new secret, logged to `requestLog`. */
    forDevice(principal: DevicePrincipal, requestLog: Logger): Promise<ProvisioningPackage> {
      return packageOf(principal.device, () => deps.rotation.issueProvisioningSecret(principal, requestLog));
    },
  };
}

export type ProvisioningService = ReturnType<typeof createProvisioningService>;
