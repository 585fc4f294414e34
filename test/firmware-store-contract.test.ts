/** The real firmware store (PostgreSQL and a data directory) against the contract its in-memory fake also passes. */
import { createTestApp } from "./support/app.ts";
import { fakeNotifier } from "./support/fakes/notifier.ts";
import { describeFirmwareStoreContract } from "./support/firmware-store-contract.ts";

describeFirmwareStoreContract("postgres", async () => {
  // The notifier is the fake one (held to MQTT by its own contract): here it only shows what the store publishes.
  const notifier = fakeNotifier();
  const app = await createTestApp({ overrides: { notifier } });
  const { models, devices, firmware, rollouts } = app.services;
  return { models, devices, firmware, rollouts, notices: () => notifier.delivered, close: () => app.close() };
});
