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
    ...timestamps,
  },
  (table) => [
    // At most one device may be PENDING, whichever process or replica tries (CONTRACT §7).
    uniqueIndex("devices_single_pending").on(sql`(true)`).where(sql`${table.rotationState} = 'PENDING'`),
    index("devices_model_idx").on(table.deviceModelId),
    index("devices_rotation_state_idx").on(table.rotationState),
    check("devices_key_format", sql`${table.key} ~ '^[a-z0-9]{8}$'`),
  ],
);

export type DeviceRow = typeof devices.$inferSelect;

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
