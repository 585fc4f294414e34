import { devicePrincipal } from "../../lib/identity/principal.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { json } from "../../lib/http/respond.ts";
import { provisioningPackageSchema } from "../../lib/provisioning/package.ts";

export default defineRoute({
  method: "GET",
  path: "/iot/provisioning",
  access: "device",
  summary: "The calling device's provisioning package; during its rotation, the new secret",
  description:
    "Outside a rotation: the current secret, unchanged. While the device is PENDING: the first call stores the old secret, then issues a new one; repeated calls return the same new secret.",
  tags: ["Device API"],
  responses: {
    200: { description: "The provisioning package", content: { "application/json": { schema: provisioningPackageSchema } } },
  },
  uses: ["provisioning"],
  async handler(_request, { services, principal, logger }) {
    return json(await services.provisioning.forDevice(devicePrincipal(principal), logger), 200, { "cache-control": "no-store" });
  },
});
