import { join } from "node:path";
import { type DatabaseHandle, openDatabase } from "../db/client.ts";
import type { Config } from "./config.ts";
import { type AuditLog, createAuditLog } from "./audit/log.ts";
import { readOrCreateSecretFile } from "./data-dir.ts";
import { createDatabaseOutageLog } from "./database-outage-log.ts";
import { createDeviceModelService, type DeviceModelService } from "./device-models.ts";
import { createDeviceService, type DeviceService } from "./devices.ts";
import { observingDevices } from "./device-state/observing.ts";
import { createDeviceStateService, type DeviceStateService } from "./device-state/service.ts";
import type { BlobStorage } from "./firmware/blobs.ts";
import { createFsBlobs } from "./firmware/fs-blobs.ts";
import { createFirmwareStore, type FirmwareStore } from "./firmware/store.ts";
import { type Authenticator, createAuthenticator } from "./identity/authenticator.ts";
import { type BuiltinClientStore, createBuiltinClientStore } from "./identity/builtin-clients.ts";
import { type BrowserSession, createBrowserSession } from "./identity/browser-session.ts";
import { createLocalSignIn, type LocalSignIn } from "./identity/local-sign-in.ts";
import { createOidcClient } from "./identity/oidc-client.ts";
import { type BuiltinIssuer, createBuiltinIssuer } from "./identity/builtin-issuer.ts";
import type { EmbeddedBroker } from "./broker/embedded-broker.ts";
import { type BrokerConnection, openNoticeChannel } from "./broker/notice-channel.ts";
import { createClientAuthLimits } from "./identity/client-auth-limits.ts";
import { createTokenVerifiers } from "./identity/token-verifiers.ts";
import { createKeycloakProvider } from "./identity/keycloak.ts";
import { createKeycloakTokenPassThrough, type KeycloakTokenPassThrough } from "./identity/keycloak-token-pass-through.ts";
import { keycloakRealmUrls } from "./identity/keycloak-urls.ts";
import type { IdentityProvider } from "./identity/provider.ts";
import { createLogger, errorMessage, type Logger, logFormatFor } from "./logger.ts";
import { createMetrics, instrument, type Metrics, observeServices } from "./metrics.ts";
import type { Notifier } from "./mqtt.ts";
import { completingRotations } from "./rotation/completion.ts";
import { createRotationEngine } from "./rotation/engine.ts";
import { createProvisioningService, type ProvisioningService } from "./provisioning/service.ts";
import { createRotationService, type RotationService } from "./rotation/service.ts";
import { createRolloutService, type RolloutService } from "./rollouts/service.ts";
import { createSchemaChecker } from "./schema-checker.ts";
import { createTestingMode, type TestingMode } from "./testing-mode.ts";
import { createDeviceDirectory, createDeviceLogService, type DeviceLogService } from "./device-logs/service.ts";
import { createLogStore } from "./device-logs/store.ts";
import { createDeviceLogMetrics, type DeviceLogMetrics } from "./device-logs/metrics.ts";
import { type CoreDumpService, createCoreDumpService } from "./coredumps/service.ts";
import { createEventHub, type EventHub } from "./events/hub.ts";
import { runSinkWhileLeader } from "./device-logs/sink-leader.ts";
import { createSecretBox, generateFernetKey, randomSecret, sameSecret, type SecretBox } from "./secrets.ts";

/** The composition root: every service built once from the configuration. Tests replace parts via overrides. */
export type Services = {
  config: Config;
  logger: Logger;
  /** Logs a failure because the database is unavailable (isDatabaseUnavailable), once per outage rather than per request. */
  logDatabaseOutage: ReturnType<typeof createDatabaseOutageLog>;
  metrics: Metrics;
  database: DatabaseHandle;
  secretBox: SecretBox;
  identity: IdentityProvider;
  /** The built-in OAuth2 token server (/oauth2/*); null when Keycloak issues the device tokens. */
  builtinIssuer: BuiltinIssuer | null;
  /** POST /oauth2/token with Keycloak: on to Keycloak's token endpoint; null with the built-in provider. */
  tokenPassThrough: KeycloakTokenPassThrough | null;
  notifier: Notifier;
  /** The MQTT broker inside the server (no MQTT_URL); null when there is none. */
  embeddedBroker: EmbeddedBroker | null;
  /** The web UI's login (BFF, /api/auth/*); null unless OIDC_ISSUER_URL, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are set. */
  browserSession: BrowserSession | null;
  /** The sign-in page with the admin API token (POST /api/auth/login); null with OIDC login or without an admin token. */
  localSignIn: LocalSignIn | null;
  auth: Authenticator;
  /** TESTING_MODE: test sessions, a forced /api/auth/self failure, device-client cleanup (/api/testing/*); else null. */
  testing: TestingMode | null;
  models: DeviceModelService;
  devices: DeviceService;
  /** What devices report and what is observed of them: last seen, running and target firmware, fleet counts. */
  deviceState: DeviceStateService;
  firmware: FirmwareStore;
  rotation: RotationService;
  /** Firmware rollouts and pins (docs/rollouts.md). */
  rollouts: RolloutService;
  provisioning: ProvisioningService;
  /** The audit trail: services record their events with it, GET /api/audit reads it. */
  audit: AuditLog;
  /** What devices print: ingest (MQTT log topics, POST /iot/logs), the bounded store, reads and retention. */
  deviceLogs: DeviceLogService;
  /** Core dumps devices upload after a crash, and crash counts per model and firmware version. */
  coreDumps: CoreDumpService;
  /** Live events for GET /api/events, from every replica (LISTEN/NOTIFY). */
  events: EventHub;
  /** Counters of device logs and crashes (lib/device-logs/metrics.ts), on the registry of `metrics`. */
  deviceLogMetrics: DeviceLogMetrics;
  close(): Promise<void>;
};

export type ServiceOverrides = Partial<Pick<Services, "logger" | "metrics" | "notifier" | "database">> & {
  /** A provider, or a wrapper around the configured one (tests inject faults this way). */
  identity?: IdentityProvider | ((configured: IdentityProvider) => IdentityProvider);
  /** Name for the MQTT client id, so each process is told apart at the broker. */
  processName?: string;
  /** How the Keycloak token pass-through reaches Keycloak (tests make Keycloak unreachable to devices this way). */
  tokenPassThroughFetch?: typeof fetch;
  /** How often device sightings are written unasked (tests that count the writes flush themselves instead). */
  deviceStateFlushEveryMs?: number;
};

function publicBaseUrl(config: Config): string {
  return config.BASEURL ?? `http://localhost:${config.PORT}`;
}

/** Where devices reach the backend (base_url of the provisioning package), without a trailing slash. */
function deviceBaseUrl(config: Config): string {
  return (config.DEVICE_BASEURL ?? publicBaseUrl(config)).replace(/\/+$/, "");
}

function loadSecretBox(config: Config, logger: Logger): SecretBox {
  if (config.SECRET_ENCRYPTION_KEY) return createSecretBox(config.SECRET_ENCRYPTION_KEY);
  const file = join(config.DATA_DIR, "secret-encryption-key");
  const { value, created } = readOrCreateSecretFile(file, generateFernetKey);
  if (created) logger.warn("Generated SECRET_ENCRYPTION_KEY; back it up with the data directory", { file });
  return createSecretBox(value);
}

/** The static admin token: ADMIN_API_TOKEN, or in embedded mode (no admin IdP) one generated once and printed. */
function loadAdminApiToken(config: Config, logger: Logger): string | null {
  if (config.ADMIN_API_TOKEN) return config.ADMIN_API_TOKEN;
  if (config.OIDC_ISSUER_URL || config.production) return null;
  const file = join(config.DATA_DIR, "admin-api-token");
  const { value, created } = readOrCreateSecretFile(file, randomSecret);
  if (created) {
    process.stdout.write(`\nAdmin API token (shown once; kept in ${file}):\n  ${value}\nUse it as: Authorization: Bearer <token>\n\n`);
  } else {
    logger.info("Admin API token loaded", { file });
  }
  return value;
}

function createKeycloakIdentity(config: Config, metrics: Metrics): IdentityProvider {
  const baseUrl = config.KEYCLOAK_BASE_URL!;
  const realm = config.KEYCLOAK_REALM!;
  return createKeycloakProvider({
    baseUrl,
    realm,
    adminClientId: config.KEYCLOAK_ADMIN_CLIENT_ID!,
    adminClientSecret: config.KEYCLOAK_ADMIN_CLIENT_SECRET!,
    tokenUrl: config.OIDC_TOKEN_URL ?? keycloakRealmUrls(baseUrl, realm).tokenUrl,
    passThroughTokenUrl: `${deviceBaseUrl(config)}/oauth2/token`,
    deviceScopeName: config.KEYCLOAK_DEVICE_SCOPE_NAME,
    consoleBaseUrl: config.KEYCLOAK_CONSOLE_URL,
    record: (operation, status) => metrics.keycloakOperations.inc({ operation, status }),
  });
}

function createBrowserLogin(config: Config, secretBox: SecretBox): BrowserSession | null {
  const { OIDC_ISSUER_URL: issuerUrl, OIDC_CLIENT_ID: clientId, OIDC_CLIENT_SECRET: clientSecret } = config;
  if (!issuerUrl || !clientId || !clientSecret) return null;
  const baseUrl = publicBaseUrl(config);
  const oidc = createOidcClient({ issuerUrl, clientId, clientSecret, redirectUri: `${baseUrl}/api/auth/callback` });
  return createBrowserSession({ oidc, secretBox, baseUrl, trustedOrigins: config.CSRF_TRUSTED_ORIGINS });
}

/** Without an OIDC login, the web UI signs in on the backend's own page with the admin API token. */
function createLocalSignInPage(config: Config, adminApiToken: string, secretBox: SecretBox, logger: Logger): LocalSignIn {
  return createLocalSignIn({
    adminApiToken,
    secretBox,
    baseUrl: publicBaseUrl(config),
    trustedOrigins: config.CSRF_TRUSTED_ORIGINS,
    failureLimit: config.SIGN_IN_FAILURE_LIMIT,
    failureWindowSeconds: config.SIGN_IN_FAILURE_WINDOW_SECONDS,
    logger,
  });
}

/** Keycloak without its secret-rotation policy: say at start what that costs (docs/authentication.md). */
function warnUnlessPreviousSecretsKept(identity: IdentityProvider, logger: Logger): void {
  identity.keepsPreviousSecret().then(
    (keeps) => {
      if (!keeps) {
        logger.warn(
          "Keycloak keeps no previous client secret (feature client-secret-rotation or its client policy for iot.device clients is missing): " +
            "a rotation that times out restores the old secret, which locks out a device that stored the new one",
        );
      }
    },
    (error) => logger.warn("Could not check whether Keycloak keeps previous client secrets; the first rotation checks again", { error: errorMessage(error) }),
  );
}

export function deviceLogSettings(config: Config) {
  return {
    retentionDays: config.DEVICE_LOG_RETENTION_DAYS,
    maxLinesPerDevice: config.DEVICE_LOG_MAX_LINES_PER_DEVICE,
    maxLines: config.DEVICE_LOG_MAX_LINES_PER_REQUEST,
    maxLineBytes: config.DEVICE_LOG_MAX_LINE_BYTES,
    ratePerSecond: config.DEVICE_LOG_RATE_LINES_PER_SECOND,
    flushMs: config.DEVICE_LOG_FLUSH_MS,
    batchLines: config.DEVICE_LOG_BATCH_LINES,
    bufferLines: config.DEVICE_LOG_BUFFER_LINES,
  };
}

/**
 * The server's subscriber to the MQTT log topics: in the one process holding its lock, or with a share group in every
 * one (lib/device-logs/sink-leader.ts); none in the CLI, without a broker, or with DEVICE_LOG_MQTT=false.
 */
function startDeviceLogSink(
  config: Config,
  connection: BrokerConnection | null,
  processName: string | undefined,
  deps: { deviceLogs: DeviceLogService; database: DatabaseHandle; logger: Logger },
): { close(): Promise<void> } | null {
  if (!connection || !config.DEVICE_LOG_MQTT || processName === "cli") return null;
  // Loaded when it starts: with it the MQTT client library, which a process that runs no subscriber never parses.
  const start = async () =>
    (await import("./device-logs/mqtt-sink.ts")).startLogSink({
      ...connection,
      clientId: config.DEVICE_LOG_MQTT_CLIENT_ID,
      shareGroup: config.DEVICE_LOG_MQTT_SHARE_GROUP,
      sessionExpirySeconds: config.DEVICE_LOG_MQTT_SESSION_EXPIRY_SECONDS,
      accept: (payload, deviceClientId) => deps.deviceLogs.ingestMqtt(payload, deviceClientId),
      logger: deps.logger,
    });
  if (config.DEVICE_LOG_MQTT_SHARE_GROUP) {
    const sink = start();
    return { close: async () => (await sink).close() };
  }
  return runSinkWhileLeader({ database: deps.database, start, logger: deps.logger });
}

export async function createServices(config: Config, overrides: ServiceOverrides = {}): Promise<Services> {
  const logger = overrides.logger ?? createLogger(config.LOG_LEVEL, {}, undefined, logFormatFor(process.stdout, config.LOG_FORMAT));
  const metrics = overrides.metrics ?? createMetrics({ processMetrics: overrides.processName !== "cli" });
  const database = overrides.database ?? (await openDatabase(config));
  if (config.embeddedDatabase || config.MIGRATE_ON_START) for (const warning of await database.migrate()) logger.warn("Migration warning", { warning });
  const secretBox = loadSecretBox(config, logger);
  const audit = createAuditLog(database.db);
  const builtinClients: BuiltinClientStore | null =
    config.identity === "builtin" ? createBuiltinClientStore({ db: database.db, secretBox, tokenUrl: `${publicBaseUrl(config)}/oauth2/token` }) : null;
  const configured = () => builtinClients ?? createKeycloakIdentity(config, metrics);
  const identity =
    typeof overrides.identity === "function" ? overrides.identity(configured()) : (overrides.identity ?? configured());
  const clientAuthLimits = createClientAuthLimits(
    { perClient: config.OAUTH2_CLIENT_FAILURE_LIMIT, perAddress: config.OAUTH2_ADDRESS_FAILURE_LIMIT, windowSeconds: config.OAUTH2_FAILURE_WINDOW_SECONDS },
    logger,
  );
  const builtinIssuer = builtinClients
    ? createBuiltinIssuer({
        db: database.db,
        secretBox,
        issuer: `${publicBaseUrl(config)}/oauth2`,
        audience: config.OIDC_AUDIENCE,
        clients: builtinClients,
        limits: clientAuthLimits,
      })
    : null;
  const { verifyDeviceToken, verifyAdminToken } = createTokenVerifiers({ config, db: database.db, builtinIssuer, metrics });
  const channel = overrides.notifier
    ? { notifier: overrides.notifier, embeddedBroker: null, embeddedBrokerUrl: null, serverConnection: null }
    : await openNoticeChannel({
        config,
        runsEmbeddedBroker: overrides.processName !== "cli",
        processName: overrides.processName ?? "server",
        deviceOfToken: async (token) => (await verifyDeviceToken(token)).device.clientId,
        secretMatches: async (clientId, secret, address) =>
          builtinIssuer ? (await builtinIssuer.authenticateClient(clientId, secret, address)) !== null : sameSecret(await identity.getSecret(clientId), secret),
        metrics,
        logger,
      });
  const { notifier, embeddedBroker } = channel;
  const rotationEngine = createRotationEngine({
    db: database.db,
    identity,
    notifier,
    secretBox,
    logger,
    metrics,
    settings: {
      timeoutSeconds: config.ROTATION_TIMEOUT_SECONDS,
      retryBackoffSeconds: config.ROTATION_RETRY_BACKOFF_SECONDS,
      previousSecretGraceDays: config.ROTATION_PREVIOUS_SECRET_GRACE_DAYS,
    },
    audit,
  });
  const tokenPassThrough = builtinIssuer
    ? null
    : createKeycloakTokenPassThrough({
        tokenUrl: identity.tokenUrl,
        limits: clientAuthLimits,
        proveNewSecret: rotationEngine.proveNewSecret,
        logger,
        fetch: overrides.tokenPassThroughFetch,
      });
  warnUnlessPreviousSecretsKept(identity, logger);
  const browserSession = createBrowserLogin(config, secretBox);
  // The CLI answers no requests: it must not be the one to create (and print) the admin token.
  const adminApiToken = overrides.processName === "cli" ? null : loadAdminApiToken(config, logger);
  const localSignIn = browserSession || !adminApiToken ? null : createLocalSignInPage(config, adminApiToken, secretBox, logger);
  const testing = config.TESTING_MODE ? createTestingMode({ identity, baseUrl: publicBaseUrl(config), logger }) : null;
  if (testing) logger.warn("TESTING_MODE is on: /api/testing/* lets anybody sign in as anybody; never use it outside tests");
  const deviceState = createDeviceStateService({ db: database.db, logger, metrics, flushEveryMs: overrides.deviceStateFlushEveryMs });
  const auth = createAuthenticator({
    config,
    adminApiToken,
    sessionFromRequest: (request) => testing?.sessionFromRequest(request) ?? localSignIn?.sessionFromRequest(request) ?? null,
    adminTokenFromRequest: browserSession?.tokenFromRequest,
    verifyAdminToken,
    verifyDeviceToken: observingDevices(completingRotations(verifyDeviceToken, rotationEngine), deviceState),
  });
  const blobs = await firmwareBlobs(config, logger);
  const firmware = instrument(createFirmwareStore({ db: database.db, blobs, cacheBytes: config.FIRMWARE_CACHE_BYTES, logger, audit }), metrics, { save: "upload_firmware", deleteVersion: "delete_firmware_version" });
  const schemaChecker = createSchemaChecker();
  const models = instrument(createDeviceModelService(database.db, schemaChecker, audit, { onDeleted: firmware.removeModelFiles }), metrics, { create: "create_model", update: "update_model", remove: "delete_model" });
  const devices = instrument(createDeviceService({ db: database.db, identity, notifier, schemaChecker, logger, audit }), metrics, {
    create: "create_device",
    update: "update_device",
    remove: "delete_device",
  });
  const rotation = createRotationService({
    db: database.db,
    rawTexts: database.rawTexts,
    engine: rotationEngine,
    schedule: { cron: config.ROTATION_CRON, timezone: config.ROTATION_TIMEZONE },
    criticalThresholdDays: config.ROTATION_CRITICAL_THRESHOLD_DAYS,
    metrics,
    logger,
    audit,
  });
  const rollouts = createRolloutService({ db: database.db, notifier, logger, audit, offlineAfterSeconds: config.ROLLOUT_OFFLINE_AFTER_SECONDS });
  const provisioning = createProvisioningService({ config, embeddedBrokerUrl: channel.embeddedBrokerUrl, identity, devices, rotation });
  const logDatabaseOutage = createDatabaseOutageLog(logger);
  const deviceLogMetrics = createDeviceLogMetrics(metrics.registry);
  const coreDumps = createCoreDumpService(database.db, { maxPerDevice: config.COREDUMP_MAX_PER_DEVICE, retentionDays: config.COREDUMP_RETENTION_DAYS });
  const deviceLogs = createDeviceLogService({
    store: createLogStore(database.db),
    directory: createDeviceDirectory(database.db),
    settings: deviceLogSettings(config),
    metrics: deviceLogMetrics,
    logger,
    logDatabaseOutage,
  });
  const events = createEventHub({ database, replaySeconds: config.EVENTS_REPLAY_SECONDS, logger, logDatabaseOutage });
  const logSink = startDeviceLogSink(config, channel.serverConnection, overrides.processName, { deviceLogs, database, logger });
  observeServices(metrics, { devicesByState: rotation.countsByState, unconfirmedDevices: rotation.unconfirmedCount, firmwareCacheBytes: firmware.cachedBytes, fleets: deviceState.fleets });

  return {
    config,
    logger,
    logDatabaseOutage,
    metrics,
    database,
    secretBox,
    identity,
    builtinIssuer,
    tokenPassThrough,
    notifier,
    embeddedBroker,
    browserSession,
    localSignIn,
    auth,
    testing,
    models,
    devices,
    deviceState,
    firmware,
    rotation,
    rollouts,
    provisioning,
    audit,
    deviceLogs,
    coreDumps,
    deviceLogMetrics,
    events,
    async close() {
      await events.close();
      await logSink?.close();
      await deviceLogs.close();
      await deviceState.close();
      await rollouts.flush();
      await schemaChecker.close();
      await notifier.close();
      await embeddedBroker?.close();
      await database.close();
      blobs.close?.();
    },
  };
}

/**
 * The firmware images' storage FIRMWARE_STORE names: ASSETS_DIR, or the S3 bucket (lib/config.ts checked its settings).
 * The AWS SDK is loaded only for a bucket: it adds some 130 ms to every process's start, the CLI's too.
 */
async function firmwareBlobs(config: Config, logger: Logger): Promise<BlobStorage & { close?(): void }> {
  if (config.FIRMWARE_STORE === "fs") return createFsBlobs(config.assetsDir);
  const { createS3Blobs } = await import("./firmware/s3-blobs.ts");
  const blobs = createS3Blobs({
    endpoint: config.S3_ENDPOINT,
    region: config.S3_REGION,
    bucket: config.S3_BUCKET!,
    accessKeyId: config.S3_ACCESS_KEY_ID,
    secretAccessKey: config.S3_SECRET_ACCESS_KEY,
    forcePathStyle: config.S3_FORCE_PATH_STYLE,
  }, logger);
  return { ...blobs, close: () => blobs.client.destroy() };
}
