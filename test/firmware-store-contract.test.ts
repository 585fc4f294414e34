/**
 * The real firmware store (PostgreSQL with a data directory, or with an S3 bucket on S3Proxy) against the contract its
 * in-memory fake also passes.
 */
import { createTestApp } from "./support/app.ts";
import { fakeNotifier } from "./support/fakes/notifier.ts";
import { describeFirmwareStoreContract } from "./support/firmware-store-contract.ts";
import { createTestBucket } from "./support/s3.ts";

async function realStore(env: Record<string, string> = {}) {
  // The notifier is the fake one (held to MQTT by its own contract): here it only shows what the store publishes.
  const notifier = fakeNotifier();
  const app = await createTestApp({ env, overrides: { notifier } });
  await app.services.firmware.init();
  const { models, devices, firmware, rollouts } = app.services;
  return { models, devices, firmware, rollouts, notices: () => notifier.delivered, close: () => app.close() };
}

describeFirmwareStoreContract("postgres", () => realStore());

describeFirmwareStoreContract("postgres and S3", async () => {
  const bucket = await createTestBucket();
  const store = await realStore(bucket.env);
  return { ...store, close: () => store.close().then(() => bucket.drop()) };
});
