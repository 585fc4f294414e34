import { validationFailed, type FieldError } from "./errors.ts";

/**
 * Rules for decoded input (JSON bodies, query strings, forms, device configs) before anything else looks at it:
 * - no NUL character (U+0000) in any string or key: PostgreSQL text cannot hold one and the whole query fails;
 * - no lone UTF-16 surrogate (from a JSON escape such as "\udc00"): it has no UTF-8 form, so it would be stored
 *   as U+FFFD and the text would not come back as it was sent;
 * - JSON nested at most MAX_DEPTH levels: deeper values overflow the stack of recursive validators.
 * The walk itself is iterative for the same reason.
 */
const NUL = "\u0000";
const MAX_DEPTH = 64;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const textProblem = (text: string) =>
  text.includes(NUL) ? "the NUL character (\\u0000)" : LONE_SURROGATE.test(text) ? "a lone UTF-16 surrogate (such as \\udc00)" : null;

/** The first field that breaks a rule above, or null. */
export function unsafeInputProblem(root: unknown, rootPath = ""): FieldError | null {
  // `field` is the path down to the first level below the root: what the error names, however deep the problem.
  const stack: { value: unknown; path: string; field: string; depth: number }[] = [{ value: root, path: rootPath, field: rootPath, depth: 0 }];
  while (stack.length > 0) {
    const { value, path, field, depth } = stack.pop()!;
    if (typeof value === "string") {
      const problem = textProblem(value);
      if (problem) return { field: path || "value", message: `must not contain ${problem}` };
      continue;
    }
    if (typeof value !== "object" || value === null) continue;
    if (depth >= MAX_DEPTH) return tooDeep(field || "body");
    for (const [key, item] of Object.entries(value)) {
      const itemPath = path ? `${path}.${key}` : key;
      const problem = textProblem(key);
      if (problem) return { field: itemPath, message: `must not contain ${problem} in its name` };
      stack.push({ value: item, path: itemPath, field: depth === 0 ? itemPath : field, depth: depth + 1 });
    }
  }
  return null;
}

/**
 * Whether JSON text nests deeper than MAX_DEPTH, found by a scan that stops there: JSON.parse itself spends ~90 ms
 * on a 1 MiB body of nested brackets, which is main-thread time any caller could claim.
 */
export function jsonTextTooDeep(text: string): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c) i++; // backslash: skip the escaped character
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) inString = true;
    else if (char === 0x5b || char === 0x7b) {
      if (++depth > MAX_DEPTH) return true;
    } else if (char === 0x5d || char === 0x7d) depth--;
  }
  return false;
}

export const tooDeep = (field: string): FieldError => ({ field, message: `is nested deeper than ${MAX_DEPTH} levels` });

/** Throws 400 VALIDATION_FAILED naming the first field that breaks a rule above. */
export function refuseUnsafeInput(value: unknown, path = "") {
  const problem = unsafeInputProblem(value, path);
  if (problem) throw validationFailed([problem], `${problem.field} ${problem.message}.`);
}
