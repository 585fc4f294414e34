/** The PostgreSQL device-log store (day partitions) against the contract its in-memory fake also passes. */
import { openPostgres } from "../db/client.ts";
import { createLogStore } from "../lib/device-logs/store.ts";
import { createTestDatabase } from "./support/database.ts";
import { describeLogStoreContract } from "./support/log-store-contract.ts";

describeLogStoreContract("postgres", async () => {
  const database = await createTestDatabase();
  const handle = openPostgres(database.url);
  await handle.migrate();
  return {
    store: createLogStore(handle.db),
    async close() {
      await handle.close();
      await database.drop();
    },
  };
});
