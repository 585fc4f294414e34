import { stateReportBody } from "../../lib/device-state/reports.ts";
import { devicePrincipal } from "../../lib/identity/principal.ts";
import { json } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { targetFirmwareSchema } from "../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/iot/state",
  access: "device",
  summary: "The calling device reports what it runs; the answer is its target firmware",
  description: "Every field is optional and fields not described are ignored; a malformed field refuses the whole report (400, nothing stored).",
  tags: ["Device API"],
  request: { body: stateReportBody },
  responses: {
    200: { description: "The device's target firmware", content: { "application/json": { schema: targetFirmwareSchema } } },
  },
  uses: ["deviceState"],
  async handler(_request, { services, principal, body }) {
    const device = devicePrincipal(principal);
    await services.deviceState.report(device, body);
    return json(await services.deviceState.target(device));
  },
});
