/**
 * Reading log payloads as devices send them (docs/device-logs.md): NDJSON (one JSON object a line) or one JSON array
 * of objects. Each object needs a string `message`; `entity_id` names the device on the shared topic; every other
 * field is kept as an attribute. A bad line is counted under its reason and skipped; it never costs the good ones.
 */

/** Why a line was skipped (the `reason` label of iot_device_log_lines_rejected_total). */
export type RejectReason = "not_json" | "no_message" | "oversized" | "unknown_entity" | "too_many_lines";

export type ParsedLine = {
  message: string;
  /** The shared topic's device reference; undefined when the line has none (or does not need one). */
  entityId: string | undefined;
  attributes: Record<string, unknown> | null;
};

export type ParsedPayload = { lines: ParsedLine[]; rejected: Partial<Record<RejectReason, number>> };

export type LineLimits = { maxLineBytes: number; maxLines: number };

// CSI sequences (colours, cursor movement) and OSC sequences (titles), as ESP-IDF's coloured log output uses them.
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)|\u001b[@-Z\\-_]/g;
// PostgreSQL text cannot hold NUL; other control characters (bar tab) only garble a log view.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/g;
// A lone UTF-16 surrogate (from a JSON escape such as "\udc00") has no UTF-8 form: stored as U+FFFD instead.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const wellFormed = (text: string) => text.replace(LONE_SURROGATE, "\uFFFD");

/** The message as it should be shown: colour codes and control characters removed, trailing line breaks dropped. */
export function cleanMessage(text: string): string {
  return wellFormed(text.replace(ANSI, "").replace(CONTROL, "").replace(/\s+$/, ""));
}

/** A value PostgreSQL's jsonb accepts: no NUL (\u0000) and no lone surrogate in any string or key. */
function storable(value: unknown): unknown {
  if (typeof value === "string") return wellFormed(value.replace(/\u0000/g, ""));
  if (Array.isArray(value)) return value.map(storable);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [storable(key) as string, storable(inner)]));
  }
  return value;
}

function lineOf(value: unknown): ParsedLine | RejectReason {
  if (!value || typeof value !== "object" || Array.isArray(value)) return "no_message";
  const { message, entity_id: entityId, ...rest } = value as Record<string, unknown>;
  if (typeof message !== "string") return "no_message";
  const attributes = Object.keys(rest).length > 0 ? (storable(rest) as Record<string, unknown>) : null;
  return { message: cleanMessage(message), entityId: typeof entityId === "string" ? entityId : undefined, attributes };
}

function parseOne(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The lines of a payload, each checked on its own; at most `maxLines` are kept, the rest counted as too_many_lines. */
export function parsePayload(text: string, limits: LineLimits): ParsedPayload {
  const lines: ParsedLine[] = [];
  const rejected: ParsedPayload["rejected"] = {};
  const reject = (reason: RejectReason, count = 1) => (rejected[reason] = (rejected[reason] ?? 0) + count);
  const take = (value: unknown) => {
    if (lines.length >= limits.maxLines) return reject("too_many_lines");
    const line = lineOf(value);
    if (typeof line === "string") reject(line);
    else lines.push(line);
  };
  const trimmed = text.trim();
  if (trimmed.startsWith("[")) {
    const array = parseOne(trimmed);
    if (!Array.isArray(array)) {
      reject("not_json");
      return { lines, rejected };
    }
    for (const item of array) {
      if (Buffer.byteLength(JSON.stringify(item) ?? "") > limits.maxLineBytes) reject("oversized");
      else take(item);
    }
    return { lines, rejected };
  }
  for (const raw of trimmed.split("\n")) {
    if (raw.trim() === "") continue;
    if (Buffer.byteLength(raw) > limits.maxLineBytes) {
      reject("oversized");
      continue;
    }
    const value = parseOne(raw);
    if (value === undefined) reject("not_json");
    else take(value);
  }
  return { lines, rejected };
}
