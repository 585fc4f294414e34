import { validationFailed, type FieldError } from "./http/errors.ts";

/**
 * Rules for decoded input (JSON bodies, query strings, forms, device configs) before anything else looks at it:
 * - no NUL character (U+0000) in any string or key: PostgreSQL text cannot hold one and the whole query fails;
 * - JSON nested at most MAX_DEPTH levels: deeper values overflow the stack of recursive validators.
 * The walk itself is iterative for the same reason.
 */
const NUL = "\u0000";
const MAX_DEPTH = 64;

/** The first field that breaks a rule above, or null. */
export function unsafeInputProblem(root: unknown, rootPath = ""): FieldError | null {
  // `field` is the path down to the first level below the root: what the error names, however deep the problem.
  const stack: { value: unknown; path: string; field: string; depth: number }[] = [{ value: root, path: rootPath, field: rootPath, depth: 0 }];
  while (stack.length > 0) {
    const { value, path, field, depth } = stack.pop()!;
    if (typeof value === "string") {
      if (value.includes(NUL)) return { field: path || "value", message: "must not contain the NUL character (\\u0000)" };
      continue;
    }
    if (typeof value !== "object" || value === null) continue;
    if (depth >= MAX_DEPTH) return { field: field || "body", message: `is nested deeper than ${MAX_DEPTH} levels` };
    for (const [key, item] of Object.entries(value)) {
      const itemPath = path ? `${path}.${key}` : key;
      if (key.includes(NUL)) return { field: itemPath, message: "must not contain the NUL character (\\u0000) in its name" };
      stack.push({ value: item, path: itemPath, field: depth === 0 ? itemPath : field, depth: depth + 1 });
    }
  }
  return null;
}

/** Throws 400 VALIDATION_FAILED naming the first field that breaks a rule above. */
export function refuseUnsafeInput(value: unknown, path = "") {
  const problem = unsafeInputProblem(value, path);
  if (problem) throw validationFailed([problem], `${problem.field} ${problem.message}.`);
}
