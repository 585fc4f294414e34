import { devicePrincipal } from "../../lib/identity/principal.ts";
import { json } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { targetFirmwareSchema } from "../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/firmware-version",
  access: "device",
  summary: "The calling device's target firmware (cheap poll)",
  description: "Optional X-Firmware-Version, X-Firmware-Elf-Sha256 and X-Ota-State headers report what the device runs (docs/device-protocol.md).",
  tags: ["Device API"],
  responses: {
    200: {
      description: "The version the device should run and how to check it; every field null when the model has no firmware",
      content: { "application/json": { schema: targetFirmwareSchema } },
    },
  },
  uses: ["deviceState"],
  async handler(_request, { services, principal }) {
    return json(await services.deviceState.target(devicePrincipal(principal)));
  },
});
