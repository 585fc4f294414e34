import { fileResponse } from "../../../../lib/http/file-response.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { idParams, imageDownloadResponses } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/firmware",
  access: "admin",
  summary: "Download the model's firmware",
  description: "An attachment `firmware-<code>.bin`. Supports Range (206/416), If-Range, If-None-Match (304) and HEAD.",
  tags: ["Device models"],
  request: { params: idParams },
  responses: imageDownloadResponses,
  uses: ["models", "firmware"],
  async handler(request, { services, params }) {
    const model = await services.models.findRow(params.id);
    return fileResponse(request, services.firmware.source(model), {
      "content-disposition": `attachment; filename="firmware-${model.code}.bin"`,
      "cache-control": "no-cache",
    });
  },
});
