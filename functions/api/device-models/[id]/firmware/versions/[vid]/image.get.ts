import { fileResponse } from "../../../../../../../lib/http/file-response.ts";
import { defineRoute } from "../../../../../../../lib/http/route.ts";
import { imageDownloadResponses, versionParams } from "../../../../../../../lib/schemas.ts";

/** The version string as a file name part: the descriptor allows any UTF-8, a header takes little of it. */
const fileNamePart = (version: string) => version.replace(/[^\w.+-]/g, "_");

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/firmware/versions/:vid/image",
  access: "admin",
  summary: "Download the image of one firmware version",
  description:
    "An attachment `firmware-<code>-<version>.bin`. Supports Range (206/416), If-Range, If-None-Match (304) and HEAD; " +
    "the ETag is the image's SHA-256, as in the model's firmware download.",
  tags: ["Device models"],
  request: { params: versionParams },
  responses: imageDownloadResponses,
  uses: ["models", "firmware"],
  async handler(request, { services, params }) {
    const model = await services.models.findRow(params.id);
    const version = await services.firmware.version(model, params.vid);
    return fileResponse(request, services.firmware.versionSource(model, version), {
      "content-disposition": `attachment; filename="firmware-${model.code}-${fileNamePart(version.version)}.bin"`,
      "cache-control": "no-cache",
    });
  },
});
