/** The real audit log (PostgreSQL) against the contract its in-memory fake also passes. */
import { describeAuditLogContract } from "./support/audit-contract.ts";
import { createTestApp } from "./support/app.ts";

describeAuditLogContract("postgres", async () => {
  const app = await createTestApp();
  return { audit: app.services.audit, executor: app.services.database.db, close: () => app.close() };
});
