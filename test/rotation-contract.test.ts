/** The real rotation service (PostgreSQL, built-in provider) against the contract its fake also passes. */
import { createTestApp } from "./support/app.ts";
import { fakeNotifier } from "./support/fakes/notifier.ts";
import { describeRotationContract } from "./support/rotation-contract.ts";

describeRotationContract("postgres", async () => {
  // The fake notifier (held to MQTT by its own contract) shows what the service publishes.
  const notifier = fakeNotifier();
  const app = await createTestApp({ overrides: { notifier } });
  return { services: app.services, notices: () => notifier.delivered, close: () => app.close() };
});
