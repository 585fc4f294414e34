import { z } from "zod";
import { json } from "../../../../lib/http/respond.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { testingModeOf } from "../../../../lib/testing-mode.ts";

const testUserSchema = z
  .object({
    subject: z.string().trim().min(1).max(255),
    name: z.string().max(255).nullable().default(null),
    email: z.string().max(255).nullable().default(null),
    roles: z.array(z.string().min(1).max(100)).max(50).default([]),
  })
  .meta({ id: "TestUser" });

export default defineRoute({
  method: "POST",
  path: "/api/testing/auth/session",
  access: "public",
  summary: "Testing mode: sign in as any user (an in-memory test session)",
  description:
    "Only with TESTING_MODE=true (never in production). Sets the HttpOnly session cookie `iot_access_token` of a new " +
    "in-memory session for this user: `/api/auth/self` names them, and admin routes accept them with the usual role " +
    "check (403 without `admin` in `roles`). `name` and `email` default to null, `roles` to none.",
  tags: ["Testing"],
  request: { body: testUserSchema },
  responses: { 201: { description: "The session's user", content: { "application/json": { schema: testUserSchema } } } },
  uses: ["testing"],
  async handler(_request, { services, body, responseCookies }) {
    responseCookies.push(...testingModeOf(services).startSession(body));
    return json(body, 201, { "cache-control": "no-store" });
  },
});
