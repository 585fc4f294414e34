import type { FirmwareInfo } from "../../../../lib/firmware/image.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { actorOf } from "../../../../lib/identity/principal.ts";
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
    "the model. With `rollout=staged` (the default where the model's `firmware_rollout` says so, as for every new model) it starts a rollout " +
    "with the default plan (docs/rollouts.md; an active rollout is superseded), after the pre-flight checks (409 " +
    "IMAGE_CHANGE_NOT_CONFIRMED, DOWNGRADE_NOT_CONFIRMED, SECURE_VERSION_TOO_LOW: nothing is stored); a model with no device " +
    "that needs it gets it as its stable version at once. With `rollout=immediate` (the default for models from before rollouts) it becomes the stable version for every device " +
    "at once and each gets an MQTT firmware notice. The same bytes again are the same version (`version_id`); another image with an existing " +
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
      description: "Another image of the model already has this version string (FIRMWARE_VERSION_EXISTS), or a pre-flight check refused a staged rollout",
      content: { "application/json": { schema: errorSchema } },
    },
  },
  uses: ["config", "models", "firmware", "rollouts"],
  async handler(request, { services, params, query, principal }) {
    const model = await services.models.findRow(params.id);
    // curl --data-binary's default content type is taken as the raw image from a bearer caller, never on a cookie alone.
    const untypedRaw = principal.kind === "admin" && principal.credential !== "session";
    const mode = query.rollout ?? model.firmwareRollout;
    const confirmed = { confirm_downgrade: query.confirm_downgrade, confirm_image_change: query.confirm_image_change };
    const actor = actorOf(principal);
    const check = mode === "staged" ? (info: FirmwareInfo) => services.rollouts.check(model, info, confirmed) : undefined;
    const chunks = uploadedFile(request, services.config.FIRMWARE_MAX_BYTES, { untypedRaw });
    const version = await services.firmware.save(model, chunks, { notes: query.notes?.trim() || null, uploadedBy: actor }, check);
    const rollout = await services.rollouts.afterUpload(model, version, mode, confirmed, actor);
    if (model.firmwareFile !== version.file && (rollout === null || rollout.state === "completed")) services.firmware.released(model.firmwareFile);
    return json({ id: model.id, code: model.code, firmware_version: version.version, version_id: version.id, rollout: mode, rollout_id: rollout?.id ?? null });
  },
});
