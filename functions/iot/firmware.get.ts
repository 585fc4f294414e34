import { devicePrincipal } from "../../lib/identity/principal.ts";
import { fileResponse } from "../../lib/http/file-response.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { imageDownloadResponses } from "../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/firmware",
  access: "device",
  summary: "Download the calling device's target firmware",
  description:
    "Supports Range (206/416) for resuming, If-Range, If-None-Match (304) and HEAD. 404 FIRMWARE_NOT_FOUND when the model has none. A 200 whose every byte was sent is recorded as the device's last full download.",
  tags: ["Device API"],
  responses: { ...imageDownloadResponses, 404: { description: "The model has no firmware" } },
  uses: ["deviceState", "firmware", "rollouts"],
  async handler(request, { services, principal, onResponseSent }) {
    const device = devicePrincipal(principal);
    const sent = (file: { etag: string }) => {
      const sha256 = file.etag.slice(1, -1);
      services.deviceState.downloaded(device, sha256);
      services.rollouts.downloaded(device, sha256);
    };
    return fileResponse(request, await services.firmware.targetSource(device), { "cache-control": "no-cache" }, { sent, onResponseSent });
  },
});
