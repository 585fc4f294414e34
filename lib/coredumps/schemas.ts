import { z } from "zod";
import { idParams } from "../schemas.ts";

/** Request and response shapes of the core dump routes (docs/device-logs.md#core-dumps). */
const label = (description: string) =>
  z
    .string()
    .max(64)
    .regex(/^[\x20-\x7e]*$/, "must be printable ASCII")
    .optional()
    .transform((text) => (text ? text : null))
    .meta({ description });

export const coreDumpUploadQuery = z.object({
  chip: label("The IDF target, e.g. esp32s3"),
  firmware_version: label("The running firmware's version (esp_app_get_description()->version)"),
});

export const coreDumpSchema = z
  .object({
    id: z.number().int(),
    device_id: z.number().int(),
    chip: z.string().nullable(),
    firmware_version: z.string().nullable(),
    size: z.number().int(),
    sha256: z.string(),
    received_at: z.string(),
  })
  .meta({ id: "CoreDump" });

export const coreDumpListSchema = z.object({ coredumps: z.array(coreDumpSchema), count: z.number().int() }).meta({ id: "CoreDumpList" });

export const coreDumpParams = idParams.extend({ cid: idParams.shape.id });

export const crashQuery = z.object({
  days: z
    .string()
    .regex(/^[1-9][0-9]{0,3}$/, "must be a whole number of days from 1 to 9999")
    .transform(Number)
    .optional()
    .meta({ description: "Count the crashes of the last this many days (default 7)" }),
});

export const crashCountsSchema = z
  .object({
    device_model_id: z.number().int(),
    since: z.string(),
    versions: z.array(z.object({ firmware_version: z.string().nullable(), crashes: z.number().int() })),
  })
  .meta({ id: "CrashCounts" });
