import { devicePrincipal } from "../../lib/identity/principal.ts";
import { fileResponse } from "../../lib/http/file-response.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { imageDownloadResponses } from "../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/firmware",
  access: "device",
  summary: "Download the firmware of the calling device's model",
  description: "Supports Range (206/416) for resuming, If-Range, If-None-Match (304) and HEAD. 404 FIRMWARE_NOT_FOUND when the model has none.",
  tags: ["Device API"],
  responses: { ...imageDownloadResponses, 404: { description: "The model has no firmware" } },
  async handler(request, { services, principal }) {
    const { model } = devicePrincipal(principal);
    return fileResponse(request, services.firmware.source(model), { "cache-control": "no-cache" });
  },
});
