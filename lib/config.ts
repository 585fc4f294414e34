import { CronExpressionParser } from "cron-parser";
import { z } from "zod";

/**
 * Every setting the backend reads, validated at start. Problems are collected and reported together
 * (loadConfig throws ConfigError listing all of them); values of secret settings never appear in messages.
 */
const optionalText = z.string().trim().min(1).optional();
// Without a trailing slash, so every use can append a path.
const url = z
  .url({ protocol: /^https?$/ })
  .transform((value) => value.replace(/\/+$/, ""))
  .optional();
const bool = (fallback: boolean) =>
  z
    .enum(["true", "false", "1", "0", ""])
    .optional()
    .transform((v) => (v === undefined || v === "" ? fallback : v === "true" || v === "1"));
const int = (fallback: number, min: number) => z.coerce.number().int().min(min).default(fallback);
/** Comma-separated origins (scheme, host, port), normalised as browsers send them in the Origin header. */
const originList = z
  .string()
  .transform((value, ctx) => {
    const origins: string[] = [];
    for (const item of value.split(",").map((part) => part.trim()).filter(Boolean)) {
      const origin = originOf(item);
      if (origin) origins.push(origin);
      else ctx.addIssue({ code: "custom", message: `"${item}" is not an origin such as https://ui.example.lan (scheme, host and port only)` });
    }
    return origins;
  })
  .default([]);

const envSchema = z.object({
  NODE_ENV: z.string().default("development"),
  PORT: z.coerce.number().int().min(0).max(65535, "must be a TCP port (0–65535)").default(3201),
  HOST: z.string().default("0.0.0.0"),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error", "silent"]).default("info"),
  LOG_FORMAT: z.enum(["json", "pretty"]).optional(),
  DATA_DIR: z.string().default("./data"),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL").optional(),
  MIGRATE_ON_START: bool(false),
  /** PostgreSQL only (see docs/operations.md, "Database outages"). */
  DATABASE_CONNECT_TIMEOUT_MS: int(3000, 100),
  DATABASE_STATEMENT_TIMEOUT_MS: int(2000, 100),
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: int(60_000, 1000),
  DATABASE_POOL_WAIT_MS: int(3000, 100),
  /** Where firmware images live: a directory (ASSETS_DIR) or an S3-compatible bucket (docs/firmware.md). */
  FIRMWARE_STORE: z.enum(["fs", "s3"]).default("fs"),
  ASSETS_DIR: optionalText,
  S3_ENDPOINT: url,
  S3_REGION: z.string().trim().min(1).default("us-east-1"),
  S3_BUCKET: optionalText,
  S3_ACCESS_KEY_ID: optionalText,
  S3_SECRET_ACCESS_KEY: optionalText,
  S3_FORCE_PATH_STYLE: bool(false),
  FIRMWARE_MAX_BYTES: int(16 * 1024 * 1024, 1024),
  FIRMWARE_CACHE_BYTES: int(64 * 1024 * 1024, 0),
  SHUTDOWN_DEADLINE_SECONDS: int(25, 1),
  /** Reverse proxies in front that append to X-Forwarded-For; 0 trusts none and uses the connection's peer. */
  TRUST_PROXY_HOPS: int(0, 0),

  BASEURL: url,
  CSRF_TRUSTED_ORIGINS: originList,
  DEVICE_BASEURL: url,
  MQTT_URL: z.string().regex(/^(mqtts?|wss?|tcp):\/\//, "must be an mqtt:// URL").optional(),
  DEVICE_MQTT_URL: z.string().regex(/^(mqtts?|wss?|tcp):\/\//, "must be an mqtt:// URL").optional(),
  MQTT_USERNAME: optionalText,
  MQTT_PASSWORD: optionalText,
  MQTT_LEGACY_TOPICS: bool(false),
  MQTT_PUBLISH_TIMEOUT_MS: int(5000, 100),
  /** Without MQTT_URL the server runs its own broker here (docs/operations.md, "The embedded MQTT broker"). */
  EMBEDDED_MQTT: bool(true),
  EMBEDDED_MQTT_HOST: z.string().default("0.0.0.0"),
  EMBEDDED_MQTT_PORT: z.coerce.number().int().min(0).max(65535, "must be a TCP port (0–65535)").default(1883),
  WIFI_SSID: optionalText,
  WIFI_PASSWORD: optionalText,

  SECRET_ENCRYPTION_KEY: optionalText,
  ADMIN_API_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  AUTH_DISABLED: bool(false),
  /** Wrong admin tokens on the sign-in page per client address per window; 0 = no limit. */
  SIGN_IN_FAILURE_LIMIT: int(10, 0),
  SIGN_IN_FAILURE_WINDOW_SECONDS: int(600, 1),
  /** The web UI's end-to-end suite's routes under /api/testing (docs/testing.md); refused in production. */
  TESTING_MODE: bool(false),

  KEYCLOAK_BASE_URL: url,
  KEYCLOAK_REALM: optionalText,
  KEYCLOAK_ADMIN_CLIENT_ID: optionalText,
  KEYCLOAK_ADMIN_CLIENT_SECRET: optionalText,
  KEYCLOAK_DEVICE_SCOPE_NAME: z.string().default("iot-device-audience"),
  KEYCLOAK_CONSOLE_URL: url,
  OIDC_TOKEN_URL: url,
  OIDC_ISSUER_URL: url,
  OIDC_CLIENT_ID: optionalText,
  OIDC_CLIENT_SECRET: optionalText,
  OIDC_AUDIENCE: z.string().trim().min(1).default("iot-backend"),
  OIDC_CLOCK_SKEW_SECONDS: int(30, 0),
  /** Failed client authentications at the built-in /oauth2/token per client_id, and per address, per window; 0 = no limit. */
  OAUTH2_CLIENT_FAILURE_LIMIT: int(10, 0),
  OAUTH2_ADDRESS_FAILURE_LIMIT: int(100, 0),
  OAUTH2_FAILURE_WINDOW_SECONDS: int(600, 1),

  ROTATION_CRON: z.string().default("0 8 * * 6#1"),
  ROTATION_TIMEZONE: z
    .string()
    .default("UTC")
    .refine(isTimeZone, "must be an IANA time zone such as Europe/Berlin"),
  ROTATION_TIMEOUT_SECONDS: int(300, 1),
  ROTATION_CRITICAL_THRESHOLD_DAYS: int(7, 0),
  ROTATION_SCHEDULER: z.enum(["internal", "external"]).default("internal"),
  ROTATION_INTERVAL_SECONDS: int(30, 1),
  /** First wait before a TIMEOUT device is retried; doubles per failure, capped at a day. */
  ROTATION_RETRY_BACKOFF_SECONDS: int(900, 1),
  /** How long a rotated-out secret keeps working while the device has not yet used its new one. */
  ROTATION_PREVIOUS_SECRET_GRACE_DAYS: int(30, 1),
  /** Period of the internal rollout step (with ROTATION_SCHEDULER=internal; the CronJob steps rollouts too). */
  ROLLOUT_INTERVAL_SECONDS: int(15, 1),
  /** A device not seen for this long is offline: a rollout does not admit it, nor wait for it. */
  ROLLOUT_OFFLINE_AFTER_SECONDS: int(900, 1),

  /** Device logs (docs/device-logs.md). */
  DEVICE_LOG_RETENTION_DAYS: int(7, 1),
  DEVICE_LOG_MAX_LINES_PER_DEVICE: int(200_000, 100),
  DEVICE_LOG_MQTT: bool(true),
  DEVICE_LOG_MQTT_CLIENT_ID: z.string().trim().min(1).max(128).default("iotsupport-logsink"),
  DEVICE_LOG_MQTT_SHARE_GROUP: z.string().regex(/^[^/+#]+$/, "must be a name without /, + or #").optional(),
  DEVICE_LOG_MQTT_SESSION_EXPIRY_SECONDS: int(86_400, 0),
  DEVICE_LOG_MAX_REQUEST_BYTES: int(256 * 1024, 1024),
  DEVICE_LOG_MAX_LINES_PER_REQUEST: int(1000, 1),
  DEVICE_LOG_MAX_LINE_BYTES: int(8192, 64),
  DEVICE_LOG_RATE_LINES_PER_SECOND: int(100, 1),
  DEVICE_LOG_FLUSH_MS: int(250, 10),
  DEVICE_LOG_BATCH_LINES: int(500, 1),
  DEVICE_LOG_BUFFER_LINES: int(50_000, 100),
  DEVICE_LOG_QUERY_LIMIT: int(1000, 1),
  /** Core dumps (docs/device-logs.md#core-dumps). */
  COREDUMP_MAX_BYTES: int(1024 * 1024, 1024),
  COREDUMP_MAX_PER_DEVICE: int(10, 1),
  COREDUMP_RETENTION_DAYS: int(30, 1),
  /** The admins' live stream, GET /api/events (docs/device-logs.md#live-events). */
  EVENTS_REPLAY_SECONDS: int(300, 10),
  EVENTS_HEARTBEAT_SECONDS: int(15, 1),
  EVENTS_CLIENT_BUFFER_BYTES: int(1024 * 1024, 4096),
  /** Log and core dump retention: on a timer in the server, or by the CronJob's `retention-job` (external). */
  RETENTION_SCHEDULER: z.enum(["internal", "external"]).default("internal"),
  RETENTION_INTERVAL_SECONDS: int(3600, 10),
});

export type Env = z.infer<typeof envSchema>;

export type Config = Env & {
  production: boolean;
  /** PGlite under DATA_DIR when no DATABASE_URL is set. */
  embeddedDatabase: boolean;
  assetsDir: string;
  identity: "keycloak" | "builtin";
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

const KEYCLOAK_SETTINGS = ["KEYCLOAK_REALM", "KEYCLOAK_ADMIN_CLIENT_ID", "KEYCLOAK_ADMIN_CLIENT_SECRET"] as const;

export function loadConfig(source: Record<string, string | undefined> = process.env): Config {
  const raw = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = envSchema.safeParse(raw);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
  // Checks across settings read the raw values, so they are listed even when another setting failed to parse.
  const production = raw.NODE_ENV === "production";
  if (production && (raw.AUTH_DISABLED === "true" || raw.AUTH_DISABLED === "1")) problems.push("AUTH_DISABLED: must not be true when NODE_ENV=production");
  if (production && (raw.TESTING_MODE === "true" || raw.TESTING_MODE === "1")) problems.push("TESTING_MODE: must not be true when NODE_ENV=production");
  if (production && !raw.SECRET_ENCRYPTION_KEY) problems.push("SECRET_ENCRYPTION_KEY: required when NODE_ENV=production");
  if (raw.KEYCLOAK_BASE_URL) {
    for (const name of KEYCLOAK_SETTINGS) if (!raw[name]) problems.push(`${name}: required when KEYCLOAK_BASE_URL is set`);
  }
  if (raw.FIRMWARE_STORE === "s3" && !raw.S3_BUCKET) problems.push("S3_BUCKET: required when FIRMWARE_STORE=s3");
  if (!raw.S3_ACCESS_KEY_ID !== !raw.S3_SECRET_ACCESS_KEY) problems.push("S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY: set both or neither");
  if (!parsed.success) throw new ConfigError(problems);

  const env = parsed.data;
  const cronProblem = checkCron(env.ROTATION_CRON, env.ROTATION_TIMEZONE);
  if (cronProblem) problems.push(`ROTATION_CRON: ${cronProblem}`);
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    ...env,
    production,
    embeddedDatabase: !env.DATABASE_URL,
    assetsDir: env.ASSETS_DIR ?? `${env.DATA_DIR}/firmware`,
    identity: env.KEYCLOAK_BASE_URL ? "keycloak" : "builtin",
  };
}

function checkCron(expression: string, tz: string): string | null {
  try {
    CronExpressionParser.parse(expression, { tz });
    return null;
  } catch (error) {
    return `not a valid cron expression (${(error as Error).message})`;
  }
}

function originOf(text: string): string | null {
  try {
    const url = new URL(text);
    const bare = url.pathname === "/" && !url.search && !url.hash && !url.username && !url.password;
    return bare && (url.protocol === "http:" || url.protocol === "https:") ? url.origin : null;
  } catch {
    return null;
  }
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}
