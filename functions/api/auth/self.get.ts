import { z } from "zod";
import { AppError } from "../../../lib/errors.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { errorSchema } from "../../../lib/schemas.ts";

const signedInUserSchema = z
  .object({
    subject: z.string(),
    email: z.string().nullable(),
    name: z.string().nullable(),
    roles: z.array(z.string()),
  })
  .meta({ id: "SignedInUser" });

/** What POST /api/testing/auth/force-error asked the next call to answer (TESTING_MODE only). */
function forcedFailure(status: number): AppError {
  const error = new AppError(status, "TESTING_FORCED_ERROR", `This error was forced for a test (HTTP ${status}).`, { status });
  error.alsoAs = "message";
  return error;
}

export default defineRoute({
  method: "GET",
  path: "/api/auth/self",
  access: "public",
  summary: "Who is signed in (session cookie or bearer token)",
  description:
    "200 for any signed-in user, also one without the `admin` role: the web UI uses `roles` to show \"no access\" " +
    "instead of sending the user back to the login page. 401 when nobody is signed in or the session has ended. " +
    "With TESTING_MODE, a failure asked for by `POST /api/testing/auth/force-error` comes first, then a test session.",
  tags: ["Authentication"],
  responses: {
    200: { description: "The signed-in user", content: { "application/json": { schema: signedInUserSchema } } },
    401: { description: "Nobody is signed in, or the session has ended", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["auth", "testing"],
  async handler(request, { services, responseCookies }) {
    const forced = services.testing?.takeSelfFailure();
    if (forced) throw forcedFailure(forced);
    const { subject, email, name, roles } = await services.auth.identify(request, responseCookies);
    return json({ subject, email, name, roles }, 200, { "cache-control": "no-store" });
  },
});
