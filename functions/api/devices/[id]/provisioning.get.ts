import { z } from "zod";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { partitionSizeProblem } from "../../../../lib/provisioning/nvs.ts";
import { provisioningNvsImage, provisioningPackageSchema } from "../../../../lib/provisioning/package.ts";
import { errorSchema, idParams } from "../../../../lib/schemas.ts";

const partitionSize = z
  .string()
  .regex(/^(0x[0-9a-fA-F]+|[0-9]+)$/, "must be a number of bytes, decimal or 0x-hex (e.g. 0x4000)")
  .transform(Number)
  .superRefine((size, ctx) => {
    const problem = partitionSizeProblem(size);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .meta({ description: "Size of the device's NVS partition in bytes (decimal or 0x-hex)", example: "0x4000" });

const query = z
  .strictObject({
    format: z.enum(["json", "nvs"]).optional().meta({ description: "json (default) or nvs (the raw image; needs partition_size)" }),
    partition_size: partitionSize.optional(),
  })
  .superRefine((q, ctx) => {
    if (q.format === "nvs" && q.partition_size === undefined) {
      ctx.addIssue({ code: "custom", path: ["partition_size"], message: "is required with format=nvs" });
    }
    if (q.format === "json" && q.partition_size !== undefined) {
      ctx.addIssue({ code: "custom", path: ["partition_size"], message: "applies only to the NVS image; leave it out with format=json" });
    }
  });

const nvsBase64Schema = z
  .object({ size: z.number().int(), data: z.string().meta({ description: "The NVS partition image, base64" }) })
  .meta({ id: "ProvisioningNvsBase64" });

const NO_STORE = { "cache-control": "no-store" };

const attachment = (body: string | Uint8Array<ArrayBuffer>, contentType: string, filename: string) =>
  new Response(body, {
    headers: { "content-type": contentType, "content-disposition": `attachment; filename="${filename}"`, ...NO_STORE },
  });

export default defineRoute({
  method: "GET",
  path: "/api/devices/:id/provisioning",
  access: "admin",
  summary: "Download the device's provisioning package",
  description:
    "No query: the JSON package as a file. `?partition_size=N`: `{size, data}` with the package as a base64 NVS " +
    "partition image (namespace `prov`). `?format=nvs&partition_size=N`: the raw NVS image. Reading never changes " +
    "the secret. Missing WIFI_/MQTT_/BASEURL settings: 400 PROVISIONING_NOT_CONFIGURED.",
  tags: ["Devices"],
  request: { params: idParams, query },
  responses: {
    200: {
      description: "The package (JSON file), its NVS image as base64 JSON, or the raw NVS image",
      content: {
        "application/json": { schema: z.union([provisioningPackageSchema, nvsBase64Schema]) },
        "application/octet-stream": { schema: { type: "string", format: "binary" } },
      },
    },
    409: {
      description: "The device's OAuth2 client is missing in the identity provider (CLIENT_MISSING; see keycloak-sync)",
      content: { "application/json": { schema: errorSchema } },
    },
  },
  uses: ["provisioning"],
  async handler(_request, { services, params, query }) {
    const pkg = await services.provisioning.forAdmin(params.id);
    if (query.partition_size === undefined) {
      return attachment(`${JSON.stringify(pkg, null, 2)}\n`, "application/json; charset=utf-8", `provisioning-${pkg.device_key}.json`);
    }
    const image = provisioningNvsImage(pkg, query.partition_size);
    if (query.format === "nvs") return attachment(image, "application/octet-stream", `provisioning-${pkg.device_key}.bin`);
    return json({ size: image.length, data: Buffer.from(image).toString("base64") }, 200, NO_STORE);
  },
});
