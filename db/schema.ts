import { sql } from "drizzle-orm";
import {
  type AnyPgColumn,
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  date,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
  uniqueIndex,
  varchar,
  index,
} from "drizzle-orm/pg-core";

const timestamps = {
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
};
const at = (name: string) => timestamp(name, { withTimezone: true });

export const rotationStates = ["OK", "QUEUED", "PENDING", "TIMEOUT"] as const;
export const firmwareRolloutModes = ["staged", "immediate"] as const;
export const rolloutStates = ["running", "paused", "completed", "aborted"] as const;
/** pending: not offered yet (its wave is not open, or it is offline); admitted: offered the target, not yet proven. */
export const rolloutDeviceStates = ["pending", "admitted", "succeeded", "failed"] as const;
export const rotationState = pgEnum("rotation_state", rotationStates);

/** esp_ota_img_states_t as a device reports it (docs/device-protocol.md). */
export const otaStates = ["pending_verify", "valid", "rolled_back", "invalid"] as const;
/** The fields of POST /iot/state (lib/device-state/reports.ts validates them). */
export type StateReport = {
  firmware_version?: string;
  elf_sha256?: string;
  ota_state?: (typeof otaStates)[number];
  last_invalid_version?: string;
  reset_reason?: string;
  uptime_s?: number;
  free_heap?: number;
  rssi?: number;
};

/**
 * The firmware_* columns are a copy of the stable version's (stableVersionId): a device request reads its model row
 * with its own row anyway, so serving the stable image costs no further query.
 */
export const deviceModels = pgTable("device_models", {
  id: serial("id").primaryKey(),
  code: varchar("code", { length: 50 }).notNull().unique(),
  name: varchar("name", { length: 255 }).notNull(),
  configSchema: text("config_schema"),
  stableVersionId: integer("stable_version_id").references((): AnyPgColumn => firmwareVersions.id),
  firmwareVersion: text("firmware_version"),
  firmwareFile: text("firmware_file"),
  firmwareSha256: text("firmware_sha256"),
  firmwareSize: bigint("firmware_size", { mode: "number" }),
  firmwareProjectName: text("firmware_project_name"),
  firmwareIdfVersion: text("firmware_idf_version"),
  firmwareChip: text("firmware_chip"),
  /** When this image became the stable one (Last-Modified of the model's download; not the version's upload time). */
  firmwareUploadedAt: at("firmware_uploaded_at"),
  /** What an upload starts when it does not say (docs/rollouts.md): a staged rollout, or the new stable version at once. */
  firmwareRollout: text("firmware_rollout", { enum: firmwareRolloutModes }).notNull().default("immediate"),
  ...timestamps,
});

export type ModelRow = typeof deviceModels.$inferSelect;

/** Every image accepted for a model, immutable; its file is `file` under ASSETS_DIR. */
export const firmwareVersions = pgTable(
  "firmware_versions",
  {
    id: serial("id").primaryKey(),
    deviceModelId: integer("device_model_id")
      .notNull()
      .references(() => deviceModels.id, { onDelete: "cascade" }),
    version: text("version").notNull(),
    file: text("file").notNull(),
    sha256: text("sha256").notNull(),
    size: bigint("size", { mode: "number" }).notNull(),
    /** Null for an image stored before versions were recorded (the descriptor field was not read then). */
    elfSha256: text("elf_sha256"),
    /** A u32 in the app descriptor: beyond PostgreSQL's integer. Null as elfSha256. */
    secureVersion: bigint("secure_version", { mode: "number" }),
    projectName: text("project_name").notNull(),
    chip: text("chip").notNull(),
    idfVersion: text("idf_version").notNull(),
    notes: text("notes"),
    uploadedAt: at("uploaded_at").notNull().defaultNow(),
    /** The admin's subject; null for an image stored before versions were recorded. */
    uploadedBy: text("uploaded_by"),
  },
  (table) => [
    uniqueIndex("firmware_versions_model_version").on(table.deviceModelId, table.version),
    uniqueIndex("firmware_versions_model_sha256").on(table.deviceModelId, table.sha256),
  ],
);

export const devices = pgTable(
  "devices",
  {
    id: serial("id").primaryKey(),
    key: varchar("key", { length: 8 }).notNull().unique(),
    deviceModelId: integer("device_model_id")
      .notNull()
      .references(() => deviceModels.id, { onDelete: "restrict" }),
    config: text("config").notNull(),
    deviceName: text("device_name"),
    deviceEntityId: text("device_entity_id"),
    enableOta: boolean("enable_ota"),
    clientId: text("client_id").notNull().unique(),
    rotationState: rotationState("rotation_state").notNull().default("OK"),
    secretCreatedAt: at("secret_created_at"),
    lastRotationAttemptAt: at("last_rotation_attempt_at"),
    lastRotationCompletedAt: at("last_rotation_completed_at"),
    /** When the device became PENDING (the timeout counts from here). */
    rotationStartedAt: at("rotation_started_at"),
    /**
     * When the new secret was issued in the identity provider during the current rotation. From then on the device
     * may hold it: set until the device has used it (the rotation completes), kept through timeouts and retries.
     */
    newSecretIssuedAt: at("new_secret_issued_at"),
    /** The identity provider's generation number of that new secret (null where the provider does not number them). */
    newSecretGeneration: integer("new_secret_generation"),
    /**
     * When the device got a token from the provider with that new secret, seen at the backend's token pass-through
     * (Keycloak, whose tokens do not name their secret): its next request completes the rotation.
     */
    newSecretProvenAt: at("new_secret_proven_at"),
    /** A new secret was issued and the rotation timed out before the device used it: it may hold either secret. */
    rotationUnconfirmed: boolean("rotation_unconfirmed").notNull().default(false),
    /** Until when the secret before the current one keeps working; null once it is retired (or was never kept). */
    previousSecretExpiresAt: at("previous_secret_expires_at"),
    /**
     * The secret before the current rotation, Fernet-encrypted, so a timeout can restore it. Only for an identity
     * provider that cannot keep the previous secret working (see IdentityProvider.keepsPreviousSecret).
     */
    previousSecretEncrypted: text("previous_secret_encrypted"),
    rotationFailures: integer("rotation_failures").notNull().default(0),
    nextRetryAt: at("next_retry_at"),
    rotationError: text("rotation_error"),
    /** Reported state (lib/device-state/): written at most once a minute per device, see lib/device-state/seen.ts. */
    lastSeenAt: at("last_seen_at"),
    /** The last full image (a 200, every byte sent) the device downloaded, and when the last byte went out. */
    downloadedVersionId: integer("downloaded_version_id").references(() => firmwareVersions.id, { onDelete: "set null" }),
    downloadedAt: at("downloaded_at"),
    /** What the device itself last said it runs (X-Firmware-* headers or POST /iot/state); null until it says. */
    reportedFirmwareVersion: text("reported_firmware_version"),
    reportedElfSha256: text("reported_elf_sha256"),
    otaState: text("ota_state", { enum: otaStates }),
    /** The last POST /iot/state body as validated, and when any report last changed what is stored. */
    lastStateReport: jsonb("last_state_report").$type<StateReport>(),
    reportedAt: at("reported_at"),
    /** An admin's pin: the device's target whatever rollouts say (lib/firmware/targets.ts). */
    firmwarePinVersionId: integer("firmware_pin_version_id").references(() => firmwareVersions.id),
    /**
     * The version a rollout gave the device, which it keeps until the next rollout or immediate upload of its model
     * (null: it follows the model's stable version). Set on admission, on failure and abort back to its previous target.
     */
    rolloutVersionId: integer("rollout_version_id").references(() => firmwareVersions.id),
    /** The active rollout watching this device's downloads and config fetches (set on admission, cleared when it ends). */
    rolloutId: integer("rollout_id").references((): AnyPgColumn => rollouts.id, { onDelete: "set null" }),
    ...timestamps,
  },
  (table) => [
    // At most one device may be PENDING, whichever process or replica tries (CONTRACT §7).
    uniqueIndex("devices_single_pending").on(sql`(true)`).where(sql`${table.rotationState} = 'PENDING'`),
    // The device list's filters, each in key order: a page is one index range however far into the list it starts.
    index("devices_model_key_idx").on(table.deviceModelId, table.key),
    index("devices_rotation_state_key_idx").on(table.rotationState, table.key),
    // The list's q (ILIKE '%text%' over key and name): a text few devices match is found without reading the fleet.
    // Created only where the pg_trgm extension can be (migration 0011); without it q reads the key order.
    index("devices_key_trgm_idx").using("gin", table.key.op("gin_trgm_ops")),
    index("devices_name_trgm_idx").using("gin", table.deviceName.op("gin_trgm_ops")),
    // The rotation's retries (lib/rotation/engine.ts nextCandidate), after the queue (rotation_queue).
    index("devices_retry_order_idx").on(sql`${table.nextRetryAt} asc nulls first`, table.id).where(sql`${table.rotationState} = 'TIMEOUT'`),
    // Few rows each: what every rotation cycle and status call looks for without reading the fleet.
    index("devices_previous_secret_idx").on(table.id).where(sql`${table.previousSecretExpiresAt} is not null`),
    index("devices_unconfirmed_idx").on(table.id).where(sql`${table.rotationUnconfirmed}`),
    index("devices_last_rotation_completed_idx").on(table.lastRotationCompletedAt),
    check("devices_key_format", sql`${table.key} ~ '^[a-z0-9]{8}$'`),
    // QUEUED is a row of rotation_queue, never this column (lib/rotation/queue.ts).
    check("devices_rotation_state_not_queued", sql`${table.rotationState} <> 'QUEUED'`),
  ],
);

export type DeviceRow = typeof devices.$inferSelect;

/**
 * The devices waiting for their rotation: a device with a row here is QUEUED, whatever its rotation_state column
 * (OK, or TIMEOUT for a retry an admin asked for) says. A table of its own so that queueing the whole fleet inserts
 * narrow rows instead of rewriting every device row and its seven index entries (lib/rotation/queue.ts).
 */
export const rotationQueue = pgTable(
  "rotation_queue",
  {
    deviceId: integer("device_id")
      .primaryKey()
      .references(() => devices.id, { onDelete: "cascade" }),
    /** The device's secret_created_at when it was queued: the queue's order, oldest secret first, read from one index. */
    secretCreatedAt: at("secret_created_at"),
    queuedAt: at("queued_at").notNull().defaultNow(),
  },
  (table) => [index("rotation_queue_order_idx").on(sql`${table.secretCreatedAt} asc nulls first`, table.deviceId)],
);

/**
 * The whole rotation dashboard kept ready, a chunk per two-character key prefix (lib/rotation/dashboard.ts): each group's
 * rows as the JSON the dashboard sends, comma-joined in key order. A chunk is used as stored only while it is fresh:
 * rendered by the same rendering (its SQL and threshold), no dashboard_dirty row for its prefix, and the time read
 * within the span over which none of its days_since_rotation changes; else the dashboard renders it from the devices
 * as it reads. A migration that changes what a row shows without changing that SQL must set rendered_by to null.
 */
export const dashboardChunks = pgTable("dashboard_chunks", {
  prefix: text("prefix").primaryKey(),
  /** Which rendering wrote it: a digest of the rendering's SQL and its threshold (null: never rendered). */
  renderedBy: text("rendered_by"),
  /** Epoch milliseconds from and until (exclusive) which its days hold; null: unbounded (no completed rotation). */
  validFromMs: bigint("valid_from_ms", { mode: "number" }),
  validUntilMs: bigint("valid_until_ms", { mode: "number" }),
  healthy: text("healthy").notNull().default(""),
  warning: text("warning").notNull().default(""),
  critical: text("critical").notNull().default(""),
  healthyCount: integer("healthy_count").notNull().default(0),
  warningCount: integer("warning_count").notNull().default(0),
  criticalCount: integer("critical_count").notNull().default(0),
});

/**
 * Prefixes whose devices changed since their chunk was rendered, written by the triggers of migration 0012 in the
 * changing transaction; the rendering removes those it has seen in the snapshot it rendered from.
 */
export const dashboardDirty = pgTable("dashboard_dirty", { prefix: text("prefix").notNull() }, (table) => [index("dashboard_dirty_prefix_idx").on(table.prefix)]);

/** The plan of a rollout as stored (lib/rollouts/plan.ts gives the defaults). */
export type RolloutPlan = {
  canary_device_ids: number[];
  canary_count: number;
  waves: number[];
  soak_seconds: number;
  wave_timeout_seconds: number;
  max_concurrent: number;
  failure_threshold_percent: number;
};

/** A staged rollout of one firmware version to the devices of its model (docs/rollouts.md). */
export const rollouts = pgTable(
  "rollouts",
  {
    id: serial("id").primaryKey(),
    deviceModelId: integer("device_model_id")
      .notNull()
      .references(() => deviceModels.id, { onDelete: "cascade" }),
    versionId: integer("version_id")
      .notNull()
      .references(() => firmwareVersions.id, { onDelete: "cascade" }),
    /** The model's stable version when the rollout began (what revert goes back to). */
    previousVersionId: integer("previous_version_id").references(() => firmwareVersions.id, { onDelete: "set null" }),
    state: text("state", { enum: rolloutStates }).notNull().default("running"),
    plan: jsonb("plan").$type<RolloutPlan>().notNull(),
    /** 0 is the canary wave, then plan.waves[current_wave - 1]. */
    currentWave: integer("current_wave").notNull().default(0),
    waveStartedAt: at("wave_started_at").notNull().defaultNow(),
    /** When the open wave was first found with nothing left to do (its soak time counts from here). */
    waveDoneAt: at("wave_done_at"),
    /** Failures an admin has seen and resumed past: the threshold counts only the ones after them. */
    failuresAcknowledged: integer("failures_acknowledged").notNull().default(0),
    pauseReason: text("pause_reason"),
    createdBy: text("created_by").notNull(),
    completedAt: at("completed_at"),
    ...timestamps,
  },
  (table) => [
    // Only one active rollout per model, whichever replica starts one.
    uniqueIndex("rollouts_single_active").on(table.deviceModelId).where(sql`${table.state} in ('running', 'paused')`),
  ],
);

export type RolloutRow = typeof rollouts.$inferSelect;

/** A device of a rollout and what the rollout has seen it do (lib/rollouts/verdict.ts decides from these). */
export const rolloutDevices = pgTable(
  "rollout_devices",
  {
    rolloutId: integer("rollout_id")
      .notNull()
      .references(() => rollouts.id, { onDelete: "cascade" }),
    deviceId: integer("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    wave: integer("wave").notNull(),
    position: integer("position").notNull(),
    state: text("state", { enum: rolloutDeviceStates }).notNull().default("pending"),
    /** The device's target before admission (its rollout version, else the stable one): given back on failure and abort. */
    previousVersionId: integer("previous_version_id").references(() => firmwareVersions.id, { onDelete: "set null" }),
    admittedAt: at("admitted_at"),
    firstDownloadAt: at("first_download_at"),
    lastDownloadAt: at("last_download_at"),
    downloads: integer("downloads").notNull().default(0),
    /**
     * Config fetches within a short while after a full download of the target: restarts on the new image. The
     * deployed firmware restarts at once after writing one; a second such restart means it wrote the image again
     * after booting (a rollback loop).
     */
    restartsAfterDownload: integer("restarts_after_download").notNull().default(0),
    /** The last /iot/config while the rollout watched the device. */
    configAt: at("config_at"),
    settledAt: at("settled_at"),
    failureReason: text("failure_reason"),
  },
  (table) => [
    uniqueIndex("rollout_devices_pk").on(table.rolloutId, table.deviceId),
    index("rollout_devices_state_idx").on(table.rolloutId, table.state, table.wave, table.position),
    index("rollout_devices_device_idx").on(table.deviceId),
  ],
);

export type RolloutDeviceRow = typeof rolloutDevices.$inferSelect;

/**
 * Device clients of the built-in identity provider; secrets Fernet-encrypted, never in plain text. Each new secret
 * gets the next generation number; after a rotation the previous secret keeps working until it expires or is retired.
 */
export const builtinClients = pgTable("builtin_clients", {
  clientId: text("client_id").primaryKey(),
  secretEncrypted: text("secret_encrypted").notNull(),
  secretUpdatedAt: at("secret_updated_at").notNull().defaultNow(),
  secretGeneration: integer("secret_generation").notNull().default(1),
  previousSecretEncrypted: text("previous_secret_encrypted"),
  previousSecretExpiresAt: at("previous_secret_expires_at"),
  ...timestamps,
});

/** Small named values the backend keeps across restarts (rotation schedule baseline, signing key). */
export const settings = pgTable("settings", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
  updatedAt: at("updated_at").notNull().defaultNow(),
});

/** A JSON value as an audit event's details hold it (lib/audit/ decides what goes in; never a secret). */
export type AuditDetail = string | number | boolean | null | AuditDetail[] | { [key: string]: AuditDetail };
export type AuditDetails = { [key: string]: AuditDetail };

/**
 * The audit trail (lib/audit/): admin actions and device transitions, append-only. device_id and model_id are plain
 * numbers, no foreign keys, so an event still names the device or model after it is deleted. `at` is kept to the
 * millisecond, as JavaScript dates and the API's timestamps are: the page cursor holds (at, id) exactly.
 */
export const auditEvents = pgTable(
  "audit_events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    at: timestamp("at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    /** An admin's subject, `system` (scheduler, CLI) or `device:<client_id>`. */
    actor: text("actor").notNull(),
    kind: text("kind").notNull(),
    deviceId: integer("device_id"),
    modelId: integer("model_id"),
    details: jsonb("details").$type<AuditDetails>().notNull().default({}),
  },
  // Newest first, by (at, id): one index per filter, each ending in the sort key so a page is an index range.
  (table) => [
    index("audit_events_at_idx").on(table.at, table.id),
    index("audit_events_device_idx").on(table.deviceId, table.at, table.id),
    index("audit_events_model_idx").on(table.modelId, table.at, table.id),
  ],
);
/**
 * What devices print (lib/device-logs/). Partitioned by day on `ts` (the migration says so; drizzle-kit does not):
 * retention by age drops whole days, and the index serves "one device, a time range". No foreign key: a line is
 * written without a lookup of its device, and a deleted device's lines age out with their day.
 */
export const deviceLogs = pgTable(
  "device_logs",
  {
    deviceId: integer("device_id").notNull(),
    /** When the server received the line (the device's clock is not trusted). */
    ts: at("ts").notNull(),
    message: text("message").notNull(),
    /** The line's other fields as the device sent them (relative_time, level, …); null when there were none. */
    attributes: jsonb("attributes").$type<Record<string, unknown>>(),
  },
  (table) => [index("device_logs_device_ts").on(table.deviceId, table.ts)],
);

/** Lines stored per device and day, kept with every write: retention by size reads this instead of counting rows. */
export const deviceLogVolume = pgTable(
  "device_log_volume",
  {
    deviceId: integer("device_id").notNull(),
    day: date("day", { mode: "string" }).notNull(),
    lines: integer("lines").notNull(),
  },
  (table) => [primaryKey({ columns: [table.deviceId, table.day] })],
);

const bytea = customType<{ data: Buffer; driverData: Buffer | Uint8Array }>({
  dataType: () => "bytea",
  fromDriver: (value) => Buffer.from(value),
});

/**
 * Core dumps devices uploaded after a crash (lib/coredumps/): the ELF as sent (at most COREDUMP_MAX_BYTES), kept in
 * the database so every replica serves it; the newest COREDUMP_MAX_PER_DEVICE per device, none older than
 * COREDUMP_RETENTION_DAYS. The model is copied so crashes are counted per model and version without a join.
 */
export const coreDumps = pgTable(
  "core_dumps",
  {
    id: serial("id").primaryKey(),
    deviceId: integer("device_id")
      .notNull()
      .references(() => devices.id, { onDelete: "cascade" }),
    deviceModelId: integer("device_model_id").notNull(),
    chip: text("chip"),
    firmwareVersion: text("firmware_version"),
    size: integer("size").notNull(),
    sha256: text("sha256").notNull(),
    content: bytea("content").notNull(),
    receivedAt: at("received_at").notNull().defaultNow(),
  },
  (table) => [index("core_dumps_device_received").on(table.deviceId, table.receivedAt), index("core_dumps_model_version").on(table.deviceModelId, table.firmwareVersion)],
);

export type CoreDumpRow = typeof coreDumps.$inferSelect;

/**
 * What happened, for the admins' live stream (GET /api/events, lib/events/): rows come from triggers on devices and
 * device_models (migration 0007) and from the device-log writer, each followed by NOTIFY iot_events, so every replica
 * sees every event. Kept for the replay window only (EVENTS_REPLAY_SECONDS).
 */
export const events = pgTable(
  "events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    at: at("at").notNull().defaultNow(),
    type: text("type").notNull(),
    payload: jsonb("payload").$type<Record<string, unknown>>().notNull(),
  },
  (table) => [index("events_at").on(table.at)],
);

export type EventRow = typeof events.$inferSelect;
