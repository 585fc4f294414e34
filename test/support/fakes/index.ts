/**
 * Every service of lib/context.ts as an in-memory fake, built from one place: a unit test runs a route over these
 * (lib/http/app.ts runRoute) and reads what they recorded. The fakes are held to the real adapters by the contract
 * tests (test/*-contract.test.ts and test/unit/fakes.test.ts). A service that only combines others (provisioning)
 * is the real one, built over the fakes, so the unit tests run its code rather than a copy of it.
 */
import { loadConfig } from "../../../lib/config.ts";
import type { Services } from "../../../lib/context.ts";
import { createDatabaseOutageLog } from "../../../lib/database-outage-log.ts";
import { createClientAuthLimits } from "../../../lib/identity/client-auth-limits.ts";
import { createLocalSignIn } from "../../../lib/identity/local-sign-in.ts";
import { createMetrics } from "../../../lib/metrics.ts";
import { createProvisioningService } from "../../../lib/provisioning/service.ts";
import { createSecretBox, generateFernetKey } from "../../../lib/secrets.ts";
import { createTestingMode } from "../../../lib/testing-mode.ts";
import { ADMIN_TOKEN } from "../tokens.ts";
import { fakeAuditLog } from "./audit.ts";
import { fakeAuth } from "./auth.ts";
import { fakeBrowserSession } from "./browser-session.ts";
import { fakeDatabase } from "./database.ts";
import { fakeDeviceStateService } from "./device-state.ts";
import { createDeviceLogMetrics } from "../../../lib/device-logs/metrics.ts";
import { createEventHub } from "../../../lib/events/hub.ts";
import { fakeCoreDumpService } from "./coredumps.ts";
import { fakeDeviceLogService } from "./device-logs.ts";
import { fakeDeviceService } from "./devices.ts";
import { fakeFirmwareStore } from "./firmware.ts";
import { fakeIdentityProvider } from "./identity.ts";
import { fakeBuiltinIssuer } from "./issuer.ts";
import { recordingLogger } from "./logger.ts";
import { fakeDeviceModelService } from "./models.ts";
import { fakeNotifier } from "./notifier.ts";
import { fakeRotationService } from "./rotation.ts";
import { fakeRolloutService } from "./rollouts.ts";
import { createWorld } from "./world.ts";

export const BASE_URL = "http://iot.test";

/** Settings of a server with everything a provisioning package needs; `env` changes them ("" removes one). */
const DEFAULT_ENV: Record<string, string> = {
  DATABASE_URL: "postgres://unused.invalid/unit",
  DATA_DIR: "/nonexistent/unit-tests",
  LOG_LEVEL: "silent",
  ADMIN_API_TOKEN: ADMIN_TOKEN,
  BASEURL: BASE_URL,
  DEVICE_MQTT_URL: "mqtt://broker.test:1883",
  WIFI_SSID: "fleet-wifi",
  WIFI_PASSWORD: "fleet-wifi-password",
};

export function fakeServices(options: { env?: Record<string, string>; browserLogin?: boolean } = {}) {
  const config = loadConfig({ ...DEFAULT_ENV, ...options.env });
  const world = createWorld();
  const logger = recordingLogger();
  const metrics = createMetrics();
  const database = fakeDatabase();
  const audit = fakeAuditLog();
  const identity = fakeIdentityProvider(`${BASE_URL}/oauth2/token`);
  const notifier = fakeNotifier();
  const firmware = fakeFirmwareStore(world);
  const rotation = fakeRotationService(world, {
    identity,
    notifier,
    schedule: { cron: config.ROTATION_CRON, timezone: config.ROTATION_TIMEZONE },
    criticalThresholdDays: config.ROTATION_CRITICAL_THRESHOLD_DAYS,
    previousSecretGraceDays: config.ROTATION_PREVIOUS_SECRET_GRACE_DAYS,
  });
  const browserSession = options.browserLogin ? fakeBrowserSession() : null;
  const secretBox = createSecretBox(generateFernetKey());
  // The real sign-in page (in memory, like the server's): served, as there, whenever no OIDC login is.
  const localSignIn = browserSession
    ? null
    : createLocalSignIn({
        adminApiToken: ADMIN_TOKEN,
        secretBox,
        baseUrl: BASE_URL,
        trustedOrigins: config.CSRF_TRUSTED_ORIGINS,
        failureLimit: config.SIGN_IN_FAILURE_LIMIT,
        failureWindowSeconds: config.SIGN_IN_FAILURE_WINDOW_SECONDS,
        logger,
      });
  const builtinIssuer =
    config.identity === "builtin"
      ? fakeBuiltinIssuer({
          issuer: `${BASE_URL}/oauth2`,
          audience: config.OIDC_AUDIENCE,
          identity,
          limits: createClientAuthLimits(
            { perClient: config.OAUTH2_CLIENT_FAILURE_LIMIT, perAddress: config.OAUTH2_ADDRESS_FAILURE_LIMIT, windowSeconds: config.OAUTH2_FAILURE_WINDOW_SECONDS },
            logger,
          ),
        })
      : null;

  // The real testing mode (in memory) over the fake identity provider, when TESTING_MODE is set.
  const testing = config.TESTING_MODE ? createTestingMode({ identity, baseUrl: BASE_URL, logger }) : null;
  const devices = fakeDeviceService(world, { identity, notifier });
  const deviceState = fakeDeviceStateService(world, metrics);

  const logDatabaseOutage = createDatabaseOutageLog(logger);
  const deviceLogMetrics = createDeviceLogMetrics(metrics.registry);
  const deviceLogs = fakeDeviceLogService(world, { config, metrics: deviceLogMetrics, logger, logDatabaseOutage });

  const services: Services = {
    config,
    logger,
    logDatabaseOutage,
    metrics,
    database,
    secretBox,
    identity,
    builtinIssuer,
    // The fakes are the built-in provider; the Keycloak pass-through is tested against a real Keycloak.
    tokenPassThrough: null,
    notifier,
    embeddedBroker: null,
    browserSession,
    localSignIn,
    auth: fakeAuth({
      world,
      identity,
      engine: rotation.engine,
      deviceState,
      authDisabled: config.AUTH_DISABLED,
      adminTokenFromRequest: browserSession?.tokenFromRequest,
      sessionFromRequest: (request) => testing?.sessionFromRequest(request) ?? localSignIn?.sessionFromRequest(request) ?? null,
    }),
    testing,
    models: fakeDeviceModelService(world, { onDeleted: firmware.removeModelFiles }),
    devices,
    deviceState,
    firmware,
    rotation,
    rollouts: fakeRolloutService(world, notifier),
    // The real service: it only builds the package from what the (fake) devices, identity and rotation give it.
    provisioning: createProvisioningService({ config, identity, devices, rotation }),
    deviceLogs: deviceLogs.service,
    coreDumps: fakeCoreDumpService(world, { maxPerDevice: config.COREDUMP_MAX_PER_DEVICE, retentionDays: config.COREDUMP_RETENTION_DAYS }),
    deviceLogMetrics,
    events: createEventHub({ database, replaySeconds: config.EVENTS_REPLAY_SECONDS, logger, logDatabaseOutage }),
    audit,
    close: async () => {},
  };
  return { services, world, logger, database, identity, notifier, logStore: deviceLogs.store, audit };
}

export type Fakes = ReturnType<typeof fakeServices>;
