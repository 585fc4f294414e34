import { z } from "zod";
import { devicePrincipal } from "../../lib/identity/principal.ts";
import { json } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/firmware-version",
  access: "device",
  summary: "The firmware version of the calling device's model (cheap poll)",
  tags: ["Device API"],
  responses: {
    200: {
      description: "The current firmware version, null when the model has no firmware",
      content: { "application/json": { schema: z.object({ firmware_version: z.string().nullable() }) } },
    },
  },
  async handler(_request, { principal }) {
    return json({ firmware_version: devicePrincipal(principal).model.firmwareVersion });
  },
});
