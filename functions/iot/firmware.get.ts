import { devicePrincipal } from "../../lib/identity/principal.ts";
import { fileResponse } from "../../lib/http/file-response.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { imageDownloadResponses } from "../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/firmware",
  access: "device",
  summary: "Download the calling device's target firmware (today its model's stable version)",
  description:
    "Supports Range (206/416) for resuming, If-Range, If-None-Match (304) and HEAD. 404 FIRMWARE_NOT_FOUND when the model has none. A 200 whose every byte was sent is recorded as the device's last full download.",
  tags: ["Device API"],
  responses: { ...imageDownloadResponses, 404: { description: "The model has no firmware" } },
  uses: ["deviceState", "firmware"],
  async handler(request, { services, principal, onResponseSent }) {
    const device = devicePrincipal(principal);
    // The target is the model's stable version until pins and rollouts exist (lib/firmware/targets.ts): its image is
    // the model's own download, whose Last-Modified changes whenever the stable version does.
    const sent = (file: { etag: string }) => services.deviceState.downloaded(device, file.etag.slice(1, -1));
    return fileResponse(request, services.firmware.source(device.model), { "cache-control": "no-cache" }, { sent, onResponseSent });
  },
});
