import { z } from "zod";
import { devicePrincipal } from "../../lib/identity/principal.ts";
import { jsonText } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/config",
  access: "device",
  summary: "The calling device's configuration, verbatim (like every device request, completes a rotation when made with the new secret)",
  tags: ["Device API"],
  responses: {
    200: {
      description: "The stored config text, byte for byte. `X-Rotation: completed` when this request completed the device's rotation.",
      content: { "application/json": { schema: z.unknown().meta({ description: "The device's config JSON as stored" }) } },
    },
  },
  uses: ["rollouts"],
  async handler(_request, { services, principal }) {
    const device = devicePrincipal(principal);
    // After a firmware download, the config fetch of the restarted device is what proves the new image boots.
    services.rollouts.configFetched(device);
    // Any device request made with the new secret completes the rotation (lib/rotation/completion.ts). The header
    // tells a device that keeps two secrets it may now forget the previous one (docs/device-protocol.md).
    return jsonText(device.device.config, 200, { "cache-control": "no-cache", ...(device.rotationCompleted && { "x-rotation": "completed" }) });
  },
});
