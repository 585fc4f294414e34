import { z } from "zod";
import { devicePrincipal } from "../../lib/http/auth.ts";
import { jsonText } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/config",
  access: "device",
  summary: "The calling device's configuration, verbatim (also acknowledges a pending rotation)",
  tags: ["Device API"],
  responses: {
    200: {
      description: "The stored config text, byte for byte. `X-Rotation: completed` when this call completed the device's rotation.",
      content: { "application/json": { schema: z.unknown().meta({ description: "The device's config JSON as stored" }) } },
    },
  },
  async handler(_request, { services, principal }) {
    const device = devicePrincipal(principal);
    // Also the rotation acknowledgement: a token issued after the new secret existed completes the rotation.
    // The header tells the device it may now forget its previous secret (README, device protocol).
    const completed = await services.rotation.engine.acknowledge(device);
    return jsonText(device.device.config, 200, { "cache-control": "no-cache", ...(completed && { "x-rotation": "completed" }) });
  },
});
