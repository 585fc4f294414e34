import { validationFailed } from "./http/errors.ts";

/**
 * PostgreSQL text cannot hold the NUL character (U+0000): a query carrying one fails as a whole. We refuse such
 * text wherever input enters (the HTTP edge and the device config), so it never reaches the database.
 */
const NUL = "\u0000";
const MESSAGE = "must not contain the NUL character (\\u0000)";

/** The path of the first string (or object key) in `value` that contains NUL, e.g. "config.name"; null when none does. */
function pathOfNul(value: unknown, path: string): string | null {
  if (typeof value === "string") return value.includes(NUL) ? path || "value" : null;
  if (typeof value !== "object" || value === null) return null;
  for (const [key, item] of Object.entries(value)) {
    const itemPath = path ? `${path}.${key}` : key;
    if (key.includes(NUL)) return itemPath;
    const found = pathOfNul(item, itemPath);
    if (found) return found;
  }
  return null;
}

/** Throws 400 VALIDATION_FAILED naming the first field whose text contains NUL. */
export function refuseNul(value: unknown, path = "") {
  const field = pathOfNul(value, path);
  if (field) throw validationFailed([{ field, message: MESSAGE }], `${field} ${MESSAGE}.`);
}
