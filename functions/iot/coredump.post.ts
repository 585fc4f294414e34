import { coreDumpSchema, coreDumpUploadQuery } from "../../lib/coredumps/schemas.ts";
import { crashLabel } from "../../lib/coredumps/service.ts";
import { badRequest } from "../../lib/errors.ts";
import { mediaType, readBytes, unsupportedMediaType } from "../../lib/http/body.ts";
import { devicePrincipal } from "../../lib/identity/principal.ts";
import { json } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";

export default defineRoute({
  method: "POST",
  path: "/iot/coredump",
  access: "device",
  summary: "The calling device uploads a core dump after a crash",
  description:
    "What the deployed firmware sends after a crash: the core dump ELF as the raw body, `chip` (the IDF target) and " +
    "`firmware_version` (the running version) in the query. Stored as sent (no parsing), at most COREDUMP_MAX_BYTES (413); " +
    "the device's oldest beyond COREDUMP_MAX_PER_DEVICE are dropped. Counted in iot_device_crashes_total.",
  tags: ["Device API"],
  request: {
    query: coreDumpUploadQuery,
    rawBody: { description: "The core dump ELF", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
  },
  responses: { 201: { description: "Stored", content: { "application/json": { schema: coreDumpSchema } } } },
  uses: ["config", "coreDumps", "deviceLogMetrics"],
  async handler(request, { services, principal, query }) {
    const { device, model } = devicePrincipal(principal);
    // No content type at all is taken as the raw bytes too (a minimal HTTP client); anything else is refused.
    if (request.headers.has("content-type") && mediaType(request) !== "application/octet-stream") throw unsupportedMediaType(["application/octet-stream"]);
    const content = await readBytes(request, services.config.COREDUMP_MAX_BYTES);
    if (content.length === 0) throw badRequest("The request body is empty; the core dump is expected.", "EMPTY_BODY");
    // Before the dump is stored: a failure after it would answer 500 for a stored dump, which the device sends again.
    const label = await crashLabel(services.coreDumps, model.id, query.firmware_version);
    const stored = await services.coreDumps.save({ deviceId: device.id, deviceModelId: model.id, chip: query.chip, firmwareVersion: query.firmware_version, content });
    services.deviceLogMetrics.crashes.inc({ model: model.code, firmware_version: label });
    return json(stored, 201);
  },
});
