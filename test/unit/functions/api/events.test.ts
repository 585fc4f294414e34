/** Unit tests of functions/api/events.get.ts (the stream itself runs on PostgreSQL: test/events.test.ts). */
import { describe, it } from "node:test";
import events from "../../../../functions/api/events.get.ts";
import { asAdmin, expectAdminOnly, expectError, unitApp } from "../../harness.ts";

describe("functions/api/events.get.ts", () => {
  it("is for admins only", () => expectAdminOnly(events, "GET", "/api/events"));

  it("refuses a malformed filter with 400 before any stream starts", async () => {
    const app = unitApp();
    await expectError(await app.run(events, asAdmin("GET", "/api/events?device_id=1e3")), 400, "VALIDATION_FAILED");
    await expectError(await app.run(events, asAdmin("GET", "/api/events?types=Device Logs")), 400, "VALIDATION_FAILED");
  });
});
