import { actorOf } from "../../../../lib/audit/log.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { uploadedFile } from "../../../../lib/http/upload.ts";
import { errorSchema, firmwareUploadQuery, firmwareUploadSchema, idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/device-models/:id/firmware",
  access: "admin",
  summary: "Upload the model's firmware (an ESP32-family application image)",
  description:
    "The image is validated while it streams in (400 INVALID_FIRMWARE says what is wrong) and stored as a firmware version of " +
    "the model, which becomes its stable version: the model's `firmware_version` changes and every device of the model gets an " +
    "MQTT firmware notice. The same bytes again are the same version (`version_id`), stable again; another image with an existing " +
    "version string is refused (409 FIRMWARE_VERSION_EXISTS) and changes nothing. Limit: FIRMWARE_MAX_BYTES (413). " +
    "When the firmware storage is full (507 INSUFFICIENT_STORAGE) or read-only (507 STORAGE_READ_ONLY) the current firmware stays.",
  tags: ["Device models"],
  request: {
    params: idParams,
    query: firmwareUploadQuery,
    rawBody: {
      description:
        "The image as the raw body, or as the multipart field `file` (other fields are ignored). With a bearer token a raw body " +
        "may also come without a content type or as `application/x-www-form-urlencoded` (what `curl --data-binary` sends); " +
        "with only the session cookie that is 415, as is any other type (JSON, text).",
      content: {
        "application/octet-stream": { schema: { type: "string", format: "binary" } },
        "multipart/form-data": {
          schema: { type: "object", properties: { file: { type: "string", format: "binary", description: "The image" } }, required: ["file"] },
        },
      },
    },
  },
  responses: {
    200: { description: "Stored", content: { "application/json": { schema: firmwareUploadSchema } } },
    409: {
      description: "Another image of the model already has this version string (FIRMWARE_VERSION_EXISTS)",
      content: { "application/json": { schema: errorSchema } },
    },
  },
  uses: ["config", "models", "firmware"],
  async handler(request, { services, params, query, principal }) {
    const model = await services.models.findRow(params.id);
    // curl --data-binary's default content type is taken as the raw image from a bearer caller, never on a cookie alone.
    const untypedRaw = principal.kind === "admin" && principal.credential !== "session";
    const version = await services.firmware.save(model, uploadedFile(request, services.config.FIRMWARE_MAX_BYTES, { untypedRaw }), {
      notes: query.notes?.trim() || null,
      uploadedBy: actorOf(principal),
    });
    return json({ id: model.id, code: model.code, firmware_version: version.version, version_id: version.id });
  },
});
