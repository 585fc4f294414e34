import { actorOf } from "../../../../../../../lib/identity/principal.ts";
import { defineRoute } from "../../../../../../../lib/http/route.ts";
import { noContent } from "../../../../../../../lib/http/respond.ts";
import { errorSchema, versionParams } from "../../../../../../../lib/schemas.ts";

export default defineRoute({
  method: "DELETE",
  path: "/api/device-models/:id/firmware/versions/:vid",
  access: "admin",
  summary: "Delete a firmware version and its stored image",
  description: "409 FIRMWARE_VERSION_IN_USE while it is the model's stable version; nothing changes then.",
  tags: ["Device models"],
  request: { params: versionParams },
  responses: {
    204: { description: "Deleted" },
    409: { description: "The version is in use (FIRMWARE_VERSION_IN_USE)", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["models", "firmware"],
  async handler(_request, { services, params, principal }) {
    const model = await services.models.findRow(params.id);
    await services.firmware.deleteVersion(model, params.vid, actorOf(principal));
    return noContent();
  },
});
