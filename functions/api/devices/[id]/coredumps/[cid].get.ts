import { coreDumpParams } from "../../../../../lib/coredumps/schemas.ts";
import { defineRoute } from "../../../../../lib/http/route.ts";

export default defineRoute({
  method: "GET",
  path: "/api/devices/:id/coredumps/:cid",
  access: "admin",
  summary: "Download one core dump (the ELF as the device sent it)",
  description: "An attachment `coredump-<device key>-<cid>.elf`; its SHA-256 is the `ETag`. Decode it with `idf.py coredump-info` and the firmware's ELF.",
  tags: ["Device logs"],
  request: { params: coreDumpParams },
  responses: { 200: { description: "The core dump", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } } },
  uses: ["devices", "coreDumps"],
  async handler(_request, { services, params }) {
    const device = await services.devices.get(params.id);
    const dump = await services.coreDumps.get(params.id, params.cid);
    return new Response(new Uint8Array(dump.content), {
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(dump.size),
        "content-disposition": `attachment; filename="coredump-${device.key}-${dump.id}.elf"`,
        etag: `"${dump.sha256}"`,
        "cache-control": "no-cache",
      },
    });
  },
});
