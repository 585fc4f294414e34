import { devicePrincipal } from "../../lib/identity/principal.ts";
import { fileResponse } from "../../lib/http/file-response.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { binaryContent } from "../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/firmware",
  access: "device",
  summary: "Download the firmware of the calling device's model",
  description: "Supports Range (206/416) for resuming, If-Range, If-None-Match (304) and HEAD. 404 FIRMWARE_NOT_FOUND when the model has none.",
  tags: ["Device API"],
  responses: {
    200: { description: "The image", content: binaryContent },
    206: { description: "The requested byte range", content: binaryContent },
    304: { description: "Unchanged (If-None-Match)" },
    404: { description: "The model has no firmware" },
    416: { description: "Range not satisfiable" },
  },
  async handler(request, { services, principal }) {
    const { model } = devicePrincipal(principal);
    return fileResponse(request, services.firmware.source(model), { "cache-control": "no-cache" });
  },
});
