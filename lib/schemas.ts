import { z } from "zod";
import { firmwareRolloutModes, rotationStates } from "../db/schema.ts";
import { AUDIT_KEY, readAuditKey } from "./audit/cursor.ts";
import { auditKindSchema } from "./audit/kinds.ts";
import { runningSources } from "./device-state/running.ts";
import { decodeCursor, MAX_PAGE_LIMIT } from "./paging.ts";

/** Request and response shapes of the admin API (CONTRACT §2). Types elsewhere are inferred from these. */
const timestamp = z.iso.datetime().meta({ example: "2026-03-07T08:00:00.000Z" });
const nullableText = z.string().nullable();

/**
 * An id as a path or query string carries it: plain decimal digits within PostgreSQL's integer range. Never
 * z.coerce: Number() also reads "0b1", "0x2", "1e0" and " 1" as numbers, so those spellings reached real rows.
 */
const MAX_ID = 2_147_483_647;
const decimalId = z
  .string()
  .regex(/^[1-9][0-9]{0,9}$/, "must be a positive whole number written in decimal digits")
  .transform(Number)
  .refine((id) => id <= MAX_ID, `must be at most ${MAX_ID}`)
  .meta({ example: "1" });

export const idParams = z.object({ id: decimalId });

/** An id in a JSON body: a row id, so within PostgreSQL's integer range. */
export const bodyId = z.number().int().positive().max(MAX_ID);

export const rotationStateSchema = z.enum(rotationStates).meta({ id: "RotationState" });

export const modelSummarySchema = z
  .object({
    id: z.number().int(),
    code: z.string(),
    name: z.string(),
    firmware_version: nullableText,
    has_config_schema: z.boolean(),
    device_count: z.number().int(),
  })
  .meta({ id: "ModelSummary" });

const firmwareRollout = z
  .enum(firmwareRolloutModes)
  .meta({ description: "What a firmware upload starts when it does not say: a staged rollout (the default for new models) or the new stable version for every device at once (models from before rollouts)" });

export const modelSchema = modelSummarySchema
  .extend({ config_schema: nullableText, firmware_rollout: firmwareRollout, created_at: timestamp, updated_at: timestamp })
  .meta({ id: "Model" });

const nextCursor = z.string().nullable().meta({ description: "Pass as `cursor` for the next page; null on the last page. Only in paged answers (limit or cursor given)" });
const listCount = z.number().int().meta({ description: "How many rows this answer lists (a paged answer: this page's)" });

export const modelListSchema = z.object({ device_models: z.array(modelSummarySchema), count: listCount, next_cursor: nextCursor.optional() });

const pageLimit = z
  .string()
  .regex(/^[1-9][0-9]{0,3}$/, `must be a whole number from 1 to ${MAX_PAGE_LIMIT}`)
  .transform(Number)
  .refine((limit) => limit <= MAX_PAGE_LIMIT, `must be at most ${MAX_PAGE_LIMIT}`)
  .meta({ description: "Answer one page of at most this many rows, with next_cursor (without limit and cursor: every row)", example: "100" });

/** A cursor a list gave out, read back as the sort key it carries (lib/paging.ts). */
const pageCursor = (keyPattern: RegExp) =>
  z
    .string()
    .max(200, "is not a cursor this list gave out")
    .transform((cursor, ctx) => {
      const after = decodeCursor(cursor, keyPattern);
      if (after === null) ctx.addIssue({ code: "custom", message: "is not a cursor this list gave out" });
      return after ?? "";
    })
    .meta({ description: "next_cursor of the previous page; without limit, pages hold 100 rows" });

const searchText = (what: string) =>
  z
    .string()
    .min(1, "must not be empty")
    .max(100, "must be at most 100 characters")
    .meta({ description: `Only rows whose ${what} contains this text (ignoring case)` });

export const modelListQuery = z.strictObject({
  limit: pageLimit.optional(),
  cursor: pageCursor(/^[a-z0-9_]{1,50}$/).optional(),
  q: searchText("code or name").optional(),
});

const modelCode = z
  .string()
  .min(1, "must not be empty")
  .max(50, "must be at most 50 characters")
  .regex(/^[a-z0-9_]+$/, "may contain only lowercase letters, digits and underscores");
const modelName = z.string().trim().min(1, "must not be empty").max(255, "must be at most 255 characters");
const configSchemaText = z.string().max(256 * 1024).nullable().meta({ description: "JSON text of a JSON Schema" });

export const createModelBody = z
  .strictObject({ code: modelCode, name: modelName, config_schema: configSchemaText.optional(), firmware_rollout: firmwareRollout.optional() })
  .meta({ id: "CreateModel" });

export const updateModelBody = z
  .strictObject({ name: modelName.nullable().optional(), config_schema: configSchemaText.optional(), firmware_rollout: firmwareRollout.optional() })
  .meta({ id: "UpdateModel", description: "Absent or null fields stay unchanged; code cannot change." });

export const deviceSummarySchema = z
  .object({
    id: z.number().int(),
    key: z.string(),
    device_model_id: z.number().int(),
    device_name: nullableText,
    device_entity_id: nullableText,
    enable_ota: z.boolean().nullable(),
    rotation_state: rotationStateSchema,
    secret_created_at: timestamp.nullable(),
    rotation_unconfirmed: z.boolean().meta({
      description: "A new secret was issued and the rotation timed out before the device used it: it may hold either secret",
    }),
    previous_secret_expires_at: timestamp.nullable().meta({
      description: "Until when the secret before the current one still works (null: it no longer does)",
    }),
    last_seen_at: timestamp.nullable().meta({ description: "The device's last authenticated request (to within a minute); null: never since this was recorded" }),
    running_firmware_version: nullableText.meta({ description: "The firmware version the device runs, as far as known (see running_firmware_source)" }),
    running_firmware_source: z.enum(runningSources).meta({
      description: "reported: the device said so; inferred: it authenticated again after a full download of that version; unknown: neither",
    }),
    target_firmware_version: nullableText.meta({
      description: "The version the device should run: its pin, else the version a rollout gave it, else its model's stable version",
    }),
    firmware_pin_version_id: z.number().int().nullable().meta({ description: "The firmware version an admin pinned the device to (PUT …/firmware-pin)" }),
  })
  .meta({ id: "DeviceSummary" });

export const deviceSchema = deviceSummarySchema
  .extend({
    device_model: z.object({ id: z.number().int(), code: z.string(), name: z.string(), firmware_version: nullableText }),
    config: z.string().meta({ description: "The device's configuration as JSON text" }),
    client_id: z.string(),
    last_rotation_attempt_at: timestamp.nullable(),
    last_rotation_completed_at: timestamp.nullable(),
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({ id: "Device" });

export const deviceListSchema = z.object({ devices: z.array(deviceSummarySchema), count: listCount, next_cursor: nextCursor.optional() });

export const deviceListQuery = z.strictObject({
  model_id: decimalId.optional(),
  rotation_state: rotationStateSchema.optional(),
  q: searchText("key or device_name").optional(),
  limit: pageLimit.optional(),
  cursor: pageCursor(/^[a-z0-9]{8}$/).optional(),
});

const configText = z.string().max(512 * 1024).meta({ description: "JSON text; validated against the model's schema" });

export const createDeviceBody = z
  .strictObject({ device_model_id: bodyId, config: configText })
  .meta({ id: "CreateDevice" });

export const updateDeviceBody = z.strictObject({ config: configText }).meta({ id: "UpdateDevice" });

export const firmwareUploadSchema = z
  .object({
    id: z.number().int(),
    code: z.string(),
    firmware_version: z.string(),
    version_id: z.number().int().meta({ description: "The firmware version this upload is (the same one for the same bytes)" }),
    rollout: z.enum(firmwareRolloutModes).meta({ description: "immediate: the version is now the stable one; staged: a rollout was started" }),
    rollout_id: z.number().int().nullable().meta({ description: "The rollout the upload started (staged)" }),
  })
  .meta({ id: "FirmwareUpload" });

const flag = z.enum(["true", "false"]).transform((value) => value === "true");

export const firmwareUploadQuery = z.strictObject({
  notes: z.string().max(1000, "must be at most 1000 characters").optional().meta({ description: "Free text kept with the version (new versions only)" }),
  rollout: z
    .enum(firmwareRolloutModes)
    .optional()
    .meta({ description: "staged: start a rollout with the default plan; immediate: the new stable version for every device at once. Default: the model's firmware_rollout" }),
  confirm_downgrade: flag.optional().meta({ description: "Staged: allow an image older than the stable version (the same bytes as an earlier version)" }),
  confirm_image_change: flag.optional().meta({ description: "Staged: allow a chip or project name other than the stable version's" }),
});

export const versionParams = z.object({ id: decimalId, vid: decimalId });

export const firmwareVersionSchema = z
  .object({
    id: z.number().int(),
    version: z.string().meta({ description: "The app descriptor's version string; unique per model" }),
    sha256: z.string().meta({ description: "SHA-256 of the whole file (hex); unique per model, the download's ETag" }),
    size: z.number().int(),
    elf_sha256: nullableText.meta({ description: "The app descriptor's app_elf_sha256 (hex); null for an image stored before versions were kept" }),
    secure_version: z.number().int().nullable().meta({ description: "The app descriptor's anti-rollback secure_version; null as elf_sha256" }),
    project_name: z.string(),
    chip: z.string().meta({ example: "ESP32-S2" }),
    idf_version: z.string(),
    uploaded_at: timestamp,
    uploaded_by: nullableText.meta({ description: "The admin's subject (admin-api-token for the static token, auth-disabled in development); null as elf_sha256" }),
    notes: nullableText,
    stable: z.boolean().meta({ description: "This is the model's stable version (its firmware_version, what its devices are served)" }),
  })
  .meta({ id: "FirmwareVersion" });

export const firmwareVersionListSchema = z
  .object({ versions: z.array(firmwareVersionSchema).meta({ description: "Newest first" }), count: z.number().int() })
  .meta({ id: "FirmwareVersionList" });

export type FirmwareVersion = z.infer<typeof firmwareVersionSchema>;

export const binaryContent = { "application/octet-stream": { schema: { type: "string" as const, format: "binary" } } };

/** What a firmware image download may answer (lib/http/file-response.ts serves them all alike). */
export const imageDownloadResponses = {
  200: { description: "The image", content: binaryContent },
  206: { description: "The requested byte range", content: binaryContent },
  304: { description: "Unchanged (If-None-Match)" },
  416: { description: "Range not satisfiable" },
};

/** A device's target firmware as the device API describes it; every field null when its model has no firmware. */
export const targetFirmwareSchema = z
  .object({
    firmware_version: nullableText.meta({ description: "The version the device should run (compatible: what firmware-version always answered)" }),
    version_id: z.number().int().nullable(),
    sha256: nullableText.meta({ description: "SHA-256 of the image file (hex), its download's ETag" }),
    size: z.number().int().nullable(),
    elf_sha256: nullableText.meta({ description: "The image's app_elf_sha256 (hex): compare with esp_app_get_description()->app_elf_sha256" }),
    secure_version: z.number().int().nullable(),
    rollout_id: z.number().int().nullable().meta({ description: "The rollout that gave the device this target (null: its pin or its model's stable version)" }),
  })
  .meta({ id: "TargetFirmware" });

export type TargetFirmware = z.infer<typeof targetFirmwareSchema>;

export const fleetQuery = z.strictObject({
  stale_hours: z
    .string()
    .regex(/^[1-9][0-9]{0,4}$/, "must be a whole number of hours from 1 to 99999")
    .transform(Number)
    .optional()
    .meta({ description: "A device not seen for this many hours is stale (default 24)", example: "24" }),
});

export const fleetSchema = z
  .object({
    versions: z
      .array(
        z.object({
          version: nullableText.meta({ description: "null: devices whose running version is unknown, or that have no target" }),
          running: z.number().int().meta({ description: "Devices running this version (reported or inferred)" }),
          target: z.number().int().meta({ description: "Devices whose target is this version" }),
          crashes: z.number().int().optional().meta({ description: "Core dumps devices uploaded while running this version, in the last 7 days (GET …/fleet only)" }),
        }),
      )
      .meta({ description: "Every version some device runs or should run; most running first" }),
    stale: z.number().int().meta({ description: "Devices not seen for stale_hours (never seen included)" }),
    mismatched: z.number().int().meta({ description: "Devices whose known running version differs from their target" }),
  })
  .meta({ id: "Fleet" });

export type Fleet = z.infer<typeof fleetSchema>;

export const errorSchema = z
  .object({
    error: z.string(),
    code: z.string(),
    details: z.record(z.string(), z.unknown()).nullable(),
    correlationId: z.string(),
  })
  .meta({ id: "Error" });

export type ModelSummary = z.infer<typeof modelSummarySchema>;
export type Model = z.infer<typeof modelSchema>;
export type DeviceSummary = z.infer<typeof deviceSummarySchema>;
export type Device = z.infer<typeof deviceSchema>;
export type DeviceListQuery = z.output<typeof deviceListQuery>;
export type ModelListQuery = z.output<typeof modelListQuery>;
/** The filters of a list and where its page starts (a sort key), as the services take them. */
export type DeviceFilters = Omit<DeviceListQuery, "limit" | "cursor">;
export type DevicePageQuery = DeviceFilters & { after?: string; limit: number };
export type ModelPageQuery = Omit<ModelListQuery, "limit" | "cursor"> & { after?: string; limit: number };

export const rotationStatusSchema = z
  .object({
    counts_by_state: z.record(rotationStateSchema, z.number().int()),
    unconfirmed_count: z.number().int().meta({ description: "Devices whose new secret is not confirmed yet (see rotation_unconfirmed)" }),
    pending_device_id: z.number().int().nullable(),
    last_rotation_completed_at: timestamp.nullable(),
    next_scheduled_rotation: timestamp.nullable(),
  })
  .meta({ id: "RotationStatus" });

export const dashboardRowSchema = z
  .object({
    id: z.number().int(),
    key: z.string(),
    device_name: nullableText,
    device_model_code: z.string(),
    rotation_state: rotationStateSchema,
    rotation_unconfirmed: z.boolean(),
    last_rotation_completed_at: timestamp.nullable(),
    days_since_rotation: z.number().int().nullable(),
  })
  .meta({ id: "RotationDashboardRow" });

export const dashboardSchema = z
  .object({
    healthy: z.array(dashboardRowSchema),
    warning: z.array(dashboardRowSchema),
    critical: z.array(dashboardRowSchema),
    counts: z.object({ healthy: z.number().int(), warning: z.number().int(), critical: z.number().int(), unconfirmed: z.number().int() }),
  })
  .meta({ id: "RotationDashboard" });

export const dashboardGroupSchema = z.enum(["healthy", "warning", "critical"]).meta({ description: "One group of the dashboard, answered a page at a time with next_cursor and the counts of every group; required with limit or cursor" });

const dashboardCursorKey = /^(healthy|warning|critical):[a-z0-9]{8}$/;

/** Paging one group of the dashboard (docs/api.md, "Long lists"); without any parameter, the whole dashboard. */
export const dashboardQuery = z
  .strictObject({
    group: dashboardGroupSchema.optional(),
    limit: pageLimit.optional(),
    // The cursor carries its group with the key, so a cursor of one group is refused for another.
    cursor: pageCursor(dashboardCursorKey)
      .transform((after) => {
        const [group, key] = after.split(":") as [z.infer<typeof dashboardGroupSchema>, string];
        return { group, key };
      })
      .optional()
      .meta({ description: "next_cursor of the previous page of the same group; without limit, pages hold 100 rows" }),
  })
  .superRefine((query, ctx) => {
    if (query.group === undefined && (query.limit !== undefined || query.cursor !== undefined)) {
      ctx.addIssue({ code: "custom", path: ["group"], message: "is required with limit or cursor" });
    } else if (query.cursor !== undefined && query.cursor.group !== query.group) {
      ctx.addIssue({ code: "custom", path: ["cursor"], message: "is not a cursor of this group" });
    }
  });

export const dashboardCountsSchema = dashboardSchema.shape.counts;

export const dashboardPageSchema = z
  .object({
    group: dashboardGroupSchema,
    devices: z.array(dashboardRowSchema),
    next_cursor: nextCursor,
    counts: dashboardCountsSchema,
  })
  .meta({ id: "RotationDashboardPage" });

export type DashboardRow = z.infer<typeof dashboardRowSchema>;
export type DashboardCounts = z.infer<typeof dashboardCountsSchema>;
export type RotationStatus = z.infer<typeof rotationStatusSchema>;

export const AUDIT_PAGE_DEFAULT = 100;
export const AUDIT_PAGE_MAX = 1000;

export const auditQuery = z.strictObject({
  device_id: decimalId.optional().meta({ description: "Only events of this device (also after it was deleted)" }),
  model_id: decimalId.optional().meta({ description: "Only events of this device model (also after it was deleted)" }),
  since: z.iso
    .datetime({ offset: true, message: "must be an ISO 8601 date and time with Z or an offset, e.g. 2026-03-07T08:00:00Z" })
    .transform((text) => new Date(text))
    .optional()
    .meta({ description: "Only events at or after this time", example: "2026-03-07T08:00:00Z" }),
  limit: z
    .string()
    .regex(/^[1-9][0-9]{0,3}$/, `must be a whole number from 1 to ${AUDIT_PAGE_MAX}`)
    .transform(Number)
    .refine((n) => n <= AUDIT_PAGE_MAX, `must be at most ${AUDIT_PAGE_MAX}`)
    .optional()
    .meta({ description: `Events per page (default ${AUDIT_PAGE_DEFAULT}, at most ${AUDIT_PAGE_MAX})`, example: "100" }),
  cursor: pageCursor(AUDIT_KEY)
    .transform(readAuditKey)
    .optional()
    .meta({ description: "next_cursor of the previous page, as it was given (opaque); keep the same filters" }),
});

export type AuditQuery = z.output<typeof auditQuery>;

export const auditEventSchema = z
  .object({
    id: z.number().int(),
    at: timestamp,
    actor: z.string().meta({ description: "Who: an admin's subject, `system` (scheduler, CLI) or `device:<client_id>`", example: "system" }),
    kind: auditKindSchema,
    device_id: z.number().int().nullable().meta({ description: "The device concerned (it may since have been deleted)" }),
    model_id: z.number().int().nullable().meta({ description: "The device model concerned (it may since have been deleted)" }),
    details: z.record(z.string(), z.unknown()).meta({ description: "What else is known of the event, by kind (see AuditKind); never a secret" }),
  })
  .meta({ id: "AuditEvent" });

export const auditPageSchema = z
  .object({
    events: z.array(auditEventSchema).meta({ description: "Newest first (by time, then id)" }),
    next_cursor: z.string().nullable().meta({ description: "Pass as `cursor` for the next (older) page; null on the last page" }),
  })
  .meta({ id: "AuditPage" });

export type AuditEventOut = z.infer<typeof auditEventSchema>;
export type AuditPage = z.infer<typeof auditPageSchema>;
