import { defineRoute } from "../../../../../../../lib/http/route.ts";
import { json } from "../../../../../../../lib/http/respond.ts";
import { toFirmwareVersion } from "../../../../../../../lib/firmware/versions.ts";
import { firmwareVersionSchema, versionParams } from "../../../../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/firmware/versions/:vid",
  access: "admin",
  summary: "One firmware version of the model",
  description: "404 FIRMWARE_VERSION_NOT_FOUND for an unknown version or one of another model.",
  tags: ["Device models"],
  request: { params: versionParams },
  responses: { 200: { description: "The version", content: { "application/json": { schema: firmwareVersionSchema } } } },
  uses: ["models", "firmware"],
  async handler(_request, { services, params }) {
    const model = await services.models.findRow(params.id);
    return json(toFirmwareVersion(await services.firmware.version(model, params.vid), model));
  },
});
