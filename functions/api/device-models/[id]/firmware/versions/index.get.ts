import { defineRoute } from "../../../../../../lib/http/route.ts";
import { json } from "../../../../../../lib/http/respond.ts";
import { toFirmwareVersion } from "../../../../../../lib/firmware/versions.ts";
import { firmwareVersionListSchema, idParams } from "../../../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/firmware/versions",
  access: "admin",
  summary: "The model's firmware versions, newest first",
  description: "Every image accepted for the model; `stable` marks the one its devices are served (the model's `firmware_version`).",
  tags: ["Device models"],
  request: { params: idParams },
  responses: { 200: { description: "The versions", content: { "application/json": { schema: firmwareVersionListSchema } } } },
  uses: ["models", "firmware"],
  async handler(_request, { services, params }) {
    const model = await services.models.findRow(params.id);
    const versions = (await services.firmware.listVersions(model)).map((row) => toFirmwareVersion(row, model));
    return json({ versions, count: versions.length });
  },
});
