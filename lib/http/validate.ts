import type { z } from "zod";
import { refuseUnsafeInput } from "../safe-input.ts";
import { notFound, validationFailed, type FieldError } from "../errors.ts";

function fieldErrors(error: z.ZodError): FieldError[] {
  return error.issues.flatMap((issue) => {
    const path = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) => ({ field: [path, key].filter(Boolean).join("."), message: "is not a known field" }));
    }
    return [{ field: path || "body", message: issue.message }];
  });
}

function describe(errors: FieldError[]): string {
  const [first] = errors;
  if (!first) return "The request is not valid.";
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more problem${errors.length > 2 ? "s" : ""})` : "";
  return `${first.field} ${first.message}${more}.`;
}

export function parseInput<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  refuseUnsafeInput(value);
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const errors = fieldErrors(result.error);
  throw validationFailed(errors, describe(errors));
}

/** Query parameters by name, a repeated name as an array; `search` is the URL's query without its "?". */
export function queryParams(search: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = Object.create(null);
  for (const [name, value] of new URLSearchParams(search)) {
    const seen = query[name];
    query[name] = seen === undefined ? value : [seen, value].flat();
  }
  return query;
}

/** Path parameters that do not parse (e.g. a non-integer id) name nothing that exists: 404, not 400. */
export function parseParams<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw notFound("No such resource: the id in the path is not valid.");
}
