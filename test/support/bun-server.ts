/**
 * The app served by Bun (Bun.serve) instead of node:http: the same route list and services as server.ts, started by
 * test/portability.test.ts with the `bun` binary. Configured from the environment like server.ts; prints the URL.
 */
import { routesFor } from "../../functions/index.ts";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createApp } from "../../lib/http/app.ts";

// Only what this file uses: @types/bun would declare Bun's globals for every file of this Node project.
type BunServer = { url: URL; requestIP(request: Request): { address: string } | null; stop(closeActiveConnections?: boolean): Promise<void> };
declare const Bun: {
  version: string;
  serve(options: { hostname: string; port: number; fetch(request: Request, server: BunServer): Promise<Response> }): BunServer;
};

const config = loadConfig();
const services = await createServices(config);
await services.firmware.init();
const app = createApp(routesFor(services), services);
const server = Bun.serve({
  hostname: config.HOST,
  port: config.PORT,
  fetch: (request, server) => app(request, { remoteAddress: server.requestIP(request)?.address ?? null }),
});
process.stdout.write(`Bun ${Bun.version} listening on ${server.url}\n`);

process.once("SIGTERM", async () => {
  await server.stop();
  await services.close();
  process.exit(0);
});
