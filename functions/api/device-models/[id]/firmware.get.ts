import { fileResponse } from "../../../../lib/http/file-response.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { binaryContent, idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/firmware",
  access: "admin",
  summary: "Download the model's firmware",
  description: "An attachment `firmware-<code>.bin`. Supports Range (206/416), If-Range, If-None-Match (304) and HEAD.",
  tags: ["Device models"],
  request: { params: idParams },
  responses: {
    200: { description: "The image", content: binaryContent },
    206: { description: "The requested byte range", content: binaryContent },
    304: { description: "Unchanged (If-None-Match)" },
    416: { description: "Range not satisfiable" },
  },
  async handler(request, { services, params }) {
    const model = await services.models.findRow(params.id);
    return fileResponse(request, services.firmware.source(model), {
      "content-disposition": `attachment; filename="firmware-${model.code}.bin"`,
      "cache-control": "no-cache",
    });
  },
});
