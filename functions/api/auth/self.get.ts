import { z } from "zod";
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

export default defineRoute({
  method: "GET",
  path: "/api/auth/self",
  access: "public",
  summary: "Who is signed in (session cookie or bearer token)",
  description:
    "200 for any signed-in user, also one without the `admin` role: the web UI uses `roles` to show \"no access\" " +
    "instead of sending the user back to the login page. 401 when nobody is signed in or the session has ended.",
  tags: ["Authentication"],
  responses: {
    200: { description: "The signed-in user", content: { "application/json": { schema: signedInUserSchema } } },
    401: { description: "Nobody is signed in, or the session has ended", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["auth"],
  async handler(request, { services, responseCookies }) {
    const { subject, email, name, roles } = await services.auth.identify(request, responseCookies);
    return json({ subject, email, name, roles }, 200, { "cache-control": "no-store" });
  },
});
