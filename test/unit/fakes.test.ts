/**
 * The fakes of test/support/fakes against the contracts the real adapters pass (the real side, which needs
 * PostgreSQL, Mosquitto or Keycloak, runs outside test/unit): a fake that drifts from its adapter fails here.
 */
import { describeAuditLogContract } from "../support/audit-contract.ts";
import { describeDeviceServicesContract } from "../support/device-services-contract.ts";
import { describeCoreDumpContract } from "../support/coredump-contract.ts";
import { fakeCoreDumpService } from "../support/fakes/coredumps.ts";
import { fakeLogStore } from "../support/fakes/device-logs.ts";
import { describeLogStoreContract } from "../support/log-store-contract.ts";
import { fakeServices } from "../support/fakes/index.ts";
import { fakeIdentityProvider } from "../support/fakes/identity.ts";
import { fakeNotifier } from "../support/fakes/notifier.ts";
import { describeFirmwareStoreContract } from "../support/firmware-store-contract.ts";
import { describeIdentityProviderContract } from "../support/identity-contract.ts";
import { describeNotifierContract } from "../support/notifier-contract.ts";
import { describeRotationContract } from "../support/rotation-contract.ts";

describeIdentityProviderContract("fake", async () => {
  const provider = fakeIdentityProvider();
  return {
    provider,
    canAuthenticate: async (clientId, secret) => (await provider.generationOf(clientId, secret)) !== null,
    tokenSecretGeneration: (clientId, secret) => provider.generationOf(clientId, secret),
    close: async () => {},
  };
});

describeNotifierContract("fake", async () => {
  const notifier = fakeNotifier();
  const down = fakeNotifier();
  down.broker.up = false;
  return {
    notifier,
    received: () => [...notifier.delivered, ...down.delivered],
    unreachable: async () => down,
    close: async () => {},
  };
});

describeDeviceServicesContract("fake", async () => {
  const { services, notifier } = fakeServices();
  const { models, devices, identity } = services;
  return { models, devices, identity, notices: () => notifier.delivered, close: async () => {} };
});

describeRotationContract("fake", async () => {
  const { services, notifier } = fakeServices();
  return { services, notices: () => notifier.delivered, close: async () => {} };
});

describeFirmwareStoreContract("fake", async () => {
  const { services, notifier } = fakeServices();
  const { models, devices, firmware, rollouts } = services;
  return { models, devices, firmware, rollouts, notices: () => notifier.delivered, close: async () => {} };
});

describeAuditLogContract("fake", async () => {
  const { services } = fakeServices();
  return { audit: services.audit, executor: services.database.db, close: async () => {} };
});

describeLogStoreContract("fake", async () => ({ store: fakeLogStore(), close: async () => {} }));

describeCoreDumpContract("fake", async () => {
  const { services, world } = fakeServices();
  const service = fakeCoreDumpService(world, { maxPerDevice: 3, retentionDays: 30 });
  return {
    service,
    async addDevice() {
      const model = await services.models.create({ code: `m${world.nextId()}`, name: "M", config_schema: null }, "test-admin");
      const device = await services.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin");
      return { deviceId: device.id, modelId: model.id };
    },
    close: async () => {},
  };
});
