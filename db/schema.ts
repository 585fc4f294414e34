import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  integer,
  pgEnum,
  pgTable,
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

export const deviceModels = pgTable("device_models", {
  id: serial("id").primaryKey(),
  code: varchar("code", { length: 50 }).notNull().unique(),
  name: varchar("name", { length: 255 }).notNull(),
  configSchema: text("config_schema"),
  firmwareVersion: text("firmware_version"),
  firmwareFile: text("firmware_file"),
  firmwareSha256: text("firmware_sha256"),
  firmwareSize: bigint("firmware_size", { mode: "number" }),
  firmwareProjectName: text("firmware_project_name"),
  firmwareIdfVersion: text("firmware_idf_version"),
  firmwareChip: text("firmware_chip"),
  firmwareUploadedAt: at("firmware_uploaded_at"),
  ...timestamps,
});

export type ModelRow = typeof deviceModels.$inferSelect;

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
