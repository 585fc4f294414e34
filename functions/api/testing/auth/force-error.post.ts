import { z } from "zod";
import { noContent } from "../../../../lib/http/respond.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { testingModeOf } from "../../../../lib/testing-mode.ts";

export default defineRoute({
  method: "POST",
  path: "/api/testing/auth/force-error",
  access: "public",
  summary: "Testing mode: make the next /api/auth/self fail",
  description:
    "Only with TESTING_MODE=true. The next single `GET /api/auth/self`, whoever calls it, answers `status` with the " +
    "error envelope (its sentence also as `message`); the calls after it answer as usual.",
  tags: ["Testing"],
  request: { query: z.object({ status: z.coerce.number().int().min(400).max(599).meta({ description: "An HTTP error status, 400–599" }) }).strict() },
  responses: { 204: { description: "The next /api/auth/self will fail" } },
  uses: ["testing"],
  async handler(_request, { services, query }) {
    testingModeOf(services).failNextSelf(query.status);
    return noContent();
  },
});
