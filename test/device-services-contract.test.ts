/** The real device-model and device services (PostgreSQL) against the contract their in-memory fakes also pass. */
import { createTestApp } from "./support/app.ts";
import { describeDeviceServicesContract } from "./support/device-services-contract.ts";
import { fakeNotifier } from "./support/fakes/notifier.ts";

describeDeviceServicesContract("postgres", async () => {
  // The notifier is the fake one (held to MQTT by its own contract): here it only shows what the services publish.
  const notifier = fakeNotifier();
  const app = await createTestApp({ overrides: { notifier } });
  const { models, devices, identity } = app.services;
  return { models, devices, identity, notices: () => notifier.delivered, close: () => app.close() };
});
