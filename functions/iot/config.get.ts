import { z } from "zod";
import { devicePrincipal } from "../../lib/http/auth.ts";
import { jsonText } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/config",
  access: "device",
  summary: "The calling device's configuration, verbatim",
  tags: ["Device API"],
  responses: {
    200: {
      description: "The stored config text, byte for byte",
      content: { "application/json": { schema: z.unknown().meta({ description: "The device's config JSON as stored" }) } },
    },
  },
  async handler(_request, { principal }) {
    return jsonText(devicePrincipal(principal).device.config, 200, { "cache-control": "no-cache" });
  },
});
