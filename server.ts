import { createServer, type Server } from "node:http";
import { pathToFileURL } from "node:url";
import { routesFor } from "./functions/index.ts";
import { loadConfig, type Config } from "./lib/config.ts";
import { createServices, type ServiceOverrides, type Services } from "./lib/context.ts";
import { createDispatcher } from "./lib/http/app.ts";
import { nodeListener } from "./lib/http/node-adapter.ts";
import { errorMessage } from "./lib/logger.ts";
import { startDashboardRendering, startInternalScheduler } from "./lib/periodic-job.ts";
import { startRetentionTimer } from "./lib/retention.ts";


/** Starts the HTTP server on the configured host and port; resolves once it listens. */
export async function startServer(config: Config, overrides: ServiceOverrides = {}) {
  const services = await createServices(config, overrides);
  // Only the server sweeps ASSETS_DIR: CLI commands (the rotation CronJob) need no firmware volume.
  await services.firmware.init();
  const server: Server = createServer(nodeListener(createDispatcher(routesFor(services), services), services.logger));
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.PORT, config.HOST, resolve);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.PORT;
  const stopScheduler =
    config.ROTATION_SCHEDULER === "internal"
      ? startInternalScheduler(services)
      : async () => {};
  const stopRetention =
    config.RETENTION_SCHEDULER === "internal" ? startRetentionTimer(services, config.RETENTION_INTERVAL_SECONDS) : async () => {};
  const stopDashboardRendering = startDashboardRendering(services);
  return {
    server,
    services,
    port,
    async stop() {
      await stopScheduler();
      await stopRetention();
      await stopDashboardRendering();
      // Event streams never end on their own: closed first, or the server would wait for them until its deadline.
      await services.events.close();
      await stopServer(server, services, config.SHUTDOWN_DEADLINE_SECONDS * 1000);
    },
  };
}

/** Graceful stop: no new connections, in-flight requests finish (up to a deadline), then DB and MQTT close. */
async function stopServer(server: Server, services: Services, deadlineMs: number) {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  // close() only ends the connections idle at that moment: a keep-alive connection whose response finishes later
  // would stay open until the deadline, so sweep until the last one is gone.
  const sweep = setInterval(() => server.closeIdleConnections(), 100);
  const deadline = setTimeout(() => server.closeAllConnections(), deadlineMs);
  await closed;
  clearInterval(sweep);
  clearTimeout(deadline);
  await services.close();
}

async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n`);
    process.exit(1);
  }
  const started = await startServer(config);
  const { logger } = started.services;
  logger.info("IoT Support Backend listening", {
    url: `http://${config.HOST === "0.0.0.0" ? "localhost" : config.HOST}:${started.port}`,
    database: started.services.database.kind,
    identity: started.services.identity.kind,
    mqtt: started.services.notifier.state(),
    docs: `/api/docs`,
  });
  let stopping = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.info("Shutting down", { signal });
      started.stop().then(
        () => process.exit(0),
        (error) => {
          logger.error("Shutdown failed", { error: errorMessage(error) });
          process.exit(1);
        },
      );
    });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error) => {
    process.stderr.write(`Failed to start: ${errorMessage(error)}\n`);
    process.exit(1);
  });
}
