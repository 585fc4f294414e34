/** Request and response shapes of the rollout API (docs/rollouts.md). Types elsewhere are inferred from these. */
import { z } from "zod";
import { rolloutDeviceStates, rolloutStates } from "../../db/schema.ts";
import { bodyId, idParams } from "../schemas.ts";

const timestamp = z.iso.datetime();
const MAX_DEVICES = 100_000;
const DAY_SECONDS = 86_400;

export const DEFAULT_PLAN = {
  canary_count: 1,
  waves: [10, 50, 100],
  soak_seconds: 600,
  wave_timeout_seconds: 3_600,
  max_concurrent: 10,
  failure_threshold_percent: 2,
} as const;

const seconds = (what: string, min: number, max: number) =>
  z.number().int(`${what} must be a whole number of seconds`).min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);

export const createRolloutBody = z
  .strictObject({
    version_id: bodyId,
    canary_device_ids: z
      .array(bodyId)
      .max(1000, "must list at most 1000 devices")
      .refine((ids) => new Set(ids).size === ids.length, "must not list a device twice")
      .optional()
      .meta({ description: "The canary devices (devices of the model); overrides canary_count" }),
    canary_count: z.number().int().min(0).max(MAX_DEVICES).optional().meta({ description: `Canary devices chosen among the most recently seen (default ${DEFAULT_PLAN.canary_count})` }),
    waves: z
      .array(z.number().int().min(1, "a wave must be at least 1 %").max(100, "a wave must be at most 100 %"))
      .min(1, "must have at least one wave")
      .max(20, "must have at most 20 waves")
      .refine((waves) => waves.every((wave, i) => i === 0 || wave > waves[i - 1]!), "must grow from wave to wave")
      .refine((waves) => waves.at(-1) === 100, "the last wave must be 100")
      .optional()
      .meta({ description: "Cumulative share of the devices each wave after the canary reaches, in percent (default [10, 50, 100])" }),
    soak_seconds: seconds("soak_seconds", 0, 30 * DAY_SECONDS).optional().meta({ description: `How long a finished wave is watched before the next opens (default ${DEFAULT_PLAN.soak_seconds})` }),
    wave_timeout_seconds: seconds("wave_timeout_seconds", 10, 30 * DAY_SECONDS)
      .optional()
      .meta({ description: `How long an admitted device has to succeed before it counts as failed (default ${DEFAULT_PLAN.wave_timeout_seconds})` }),
    max_concurrent: z.number().int().min(1).max(10_000).optional().meta({ description: `Devices admitted and not yet proven at once (default ${DEFAULT_PLAN.max_concurrent})` }),
    failure_threshold_percent: z
      .number()
      .min(0)
      .max(100)
      .optional()
      .meta({ description: `After the canary, the rollout pauses when failures exceed max(1, this share of its devices) (default ${DEFAULT_PLAN.failure_threshold_percent})` }),
    confirm_downgrade: z.boolean().optional().meta({ description: "Allow a version uploaded before the model's stable one" }),
    confirm_image_change: z.boolean().optional().meta({ description: "Allow a chip or project name other than the stable version's" }),
  })
  .meta({ id: "CreateRollout" });

export type CreateRollout = z.output<typeof createRolloutBody>;

const counts = z.object({ pending: z.number().int(), admitted: z.number().int(), succeeded: z.number().int(), failed: z.number().int() });

export const rolloutSchema = z
  .object({
    id: z.number().int(),
    device_model_id: z.number().int(),
    state: z.enum(rolloutStates),
    version_id: z.number().int(),
    version: z.string(),
    previous_version_id: z.number().int().nullable().meta({ description: "The model's stable version when the rollout began (revert goes back to it)" }),
    current_wave: z.number().int().meta({ description: "0: the canary; n: plan.waves[n - 1]" }),
    wave_started_at: timestamp,
    pause_reason: z.string().nullable(),
    plan: z.object({
      canary_device_ids: z.array(z.number().int()),
      canary_count: z.number().int(),
      waves: z.array(z.number().int()),
      soak_seconds: z.number().int(),
      wave_timeout_seconds: z.number().int(),
      max_concurrent: z.number().int(),
      failure_threshold_percent: z.number(),
    }),
    counts,
    created_by: z.string(),
    created_at: timestamp,
    updated_at: timestamp,
    completed_at: timestamp.nullable(),
  })
  .meta({ id: "Rollout" });

export const rolloutDeviceSchema = z
  .object({
    device_id: z.number().int(),
    key: z.string(),
    wave: z.number().int(),
    state: z.enum(rolloutDeviceStates),
    admitted_at: timestamp.nullable(),
    settled_at: timestamp.nullable(),
    downloads: z.number().int(),
    failure_reason: z.string().nullable(),
  })
  .meta({ id: "RolloutDevice" });

export const rolloutDetailSchema = rolloutSchema.extend({ devices: z.array(rolloutDeviceSchema) }).meta({ id: "RolloutDetail" });
export const rolloutListSchema = z.object({ rollouts: z.array(rolloutSchema), count: z.number().int() });

export const rolloutParams = idParams.extend({ rid: idParams.shape.id });
export const rolloutDeviceParams = rolloutParams.extend({ device_id: idParams.shape.id });

export const pinBody = z.strictObject({ version_id: bodyId }).meta({ id: "FirmwarePin" });

export type Rollout = z.infer<typeof rolloutSchema>;
export type RolloutDetail = z.infer<typeof rolloutDetailSchema>;
