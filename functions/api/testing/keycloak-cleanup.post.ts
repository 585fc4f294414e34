import { z } from "zod";
import { json } from "../../../lib/http/respond.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { testingModeOf } from "../../../lib/testing-mode.ts";

const cleanupBody = z.object({
  pattern: z
    .string()
    .min(1)
    .max(200)
    .refine((pattern) => wholeMatch(pattern) !== null, "must be a regular expression")
    .meta({ description: "A regular expression that the whole client id must match, e.g. `iotdevice-playwright_.*`" }),
});

const cleanupResult = z
  .object({ deleted_count: z.number().int(), deleted_client_ids: z.array(z.string()) })
  .meta({ id: "ClientCleanupResult" });

function wholeMatch(pattern: string): RegExp | null {
  try {
    return new RegExp(`^(?:${pattern})$`, "u");
  } catch {
    return null;
  }
}

export default defineRoute({
  method: "POST",
  path: "/api/testing/keycloak-cleanup",
  access: "public",
  summary: "Testing mode: delete the device clients whose client id matches a pattern",
  description:
    "Only with TESTING_MODE=true. Deletes the device clients (`iotdevice-<model code>-<key>`, never another client) of " +
    "the identity provider in use, Keycloak or built-in, whose whole client id matches `pattern`; device rows are left " +
    "alone. For a test suite that cleans up after itself.",
  tags: ["Testing"],
  request: { body: cleanupBody },
  responses: { 200: { description: "What was deleted", content: { "application/json": { schema: cleanupResult } } } },
  uses: ["testing"],
  async handler(_request, { services, body }) {
    const deleted = await testingModeOf(services).deleteClientsMatching(wholeMatch(body.pattern)!);
    return json({ deleted_count: deleted.length, deleted_client_ids: deleted });
  },
});
