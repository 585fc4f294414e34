import { noContent } from "../../../../lib/http/respond.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { testingModeOf } from "../../../../lib/testing-mode.ts";

export default defineRoute({
  method: "POST",
  path: "/api/testing/auth/clear",
  access: "public",
  summary: "Testing mode: end the test session",
  description: "Only with TESTING_MODE=true. Forgets the session of the request's cookie (if any) and expires the cookie.",
  tags: ["Testing"],
  responses: { 204: { description: "Signed out" } },
  uses: ["testing"],
  async handler(request, { services, responseCookies }) {
    responseCookies.push(...testingModeOf(services).endSession(request));
    return noContent();
  },
});
