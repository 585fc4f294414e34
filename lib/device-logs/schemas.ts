import { z } from "zod";

/** Request and response shapes of the device-log routes (docs/device-logs.md). */
// Checked with z.iso.datetime but documented without its (very long) pattern: a format and an example say it better.
const isoDateTime = z.iso.datetime({ offset: true });
const instant = z
  .string()
  .max(64)
  .refine((text) => isoDateTime.safeParse(text).success, "must be an ISO 8601 date-time such as 2026-03-07T08:00:00.000Z")
  .transform((text) => new Date(text))
  .meta({ format: "date-time", example: "2026-03-07T08:00:00.000Z" });

export const MAX_QUERY_LIMIT = 10_000;

export const logQuery = z
  .object({
    start: instant.optional().meta({ description: "Start of the window (inclusive); default: an hour before `end`" }),
    end: instant.optional().meta({ description: "End of the window (exclusive); default: now" }),
    query: z
      .string()
      .max(200)
      .optional()
      .meta({ description: "Only lines containing this text, case-insensitive; `*` stands for any run of characters" }),
    limit: z
      .string()
      .regex(/^[1-9][0-9]{0,4}$/, "must be a whole number from 1")
      .transform(Number)
      .refine((n) => n <= MAX_QUERY_LIMIT, `must be at most ${MAX_QUERY_LIMIT}`)
      .optional()
      .meta({ description: "Most lines in the answer; capped by DEVICE_LOG_QUERY_LIMIT" }),
  })
  .refine((q) => !q.start || !q.end || q.start <= q.end, { message: "start must not be after end", path: ["start"] });

export const logPageSchema = z
  .object({
    logs: z.array(z.object({ timestamp: z.string(), message: z.string() })),
    has_more: z.boolean(),
    window_start: z.string(),
    window_end: z.string().meta({ description: "The last line's time + 1 ms (or the end of the window when there is none): the next poll's `start`" }),
  })
  .meta({ id: "DeviceLogPage" });

export const logIngestSchema = z
  .object({
    accepted: z.number().int().meta({ description: "Lines stored (written within DEVICE_LOG_FLUSH_MS)" }),
    rejected: z.number().int().meta({ description: "Bad lines skipped (not JSON, no string message, oversized)" }),
  })
  .meta({ id: "DeviceLogIngest" });
