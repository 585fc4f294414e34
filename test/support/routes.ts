/** For tests that walk the route list (functions/index.ts): labels, concrete URLs, the routes' schemas as JSON Schema. */
import { z } from "zod";
import type { Route } from "../../lib/http/route.ts";

export const label = (route: Route) => `${route.method} ${route.path}`;

/** A concrete URL for a pattern: ids become `id`, other parameters a harmless word. */
export const concrete = (path: string, id = "1") => path.replace(/:(\w+)/g, (_, name: string) => (name === "id" ? id : "sample"));

export type JsonSchema = {
  type?: string | string[];
  anyOf?: JsonSchema[];
  enum?: unknown[];
  pattern?: string;
  format?: string;
  minLength?: number;
  maxLength?: number;
  maximum?: number;
  description?: string;
  example?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean;
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
};

/** A zod schema as JSON Schema, as the OpenAPI document shows it to clients (the input side: before coercion). */
export const jsonSchemaOf = (schema: z.ZodType) => z.toJSONSchema(schema, { io: "input" }) as JsonSchema;

/** `schema` with its `$ref` (into the `$defs` of `document`) followed. */
export const resolveRef = (document: JsonSchema, schema: JsonSchema = document): JsonSchema =>
  schema.$ref ? document.$defs![schema.$ref.split("/").pop()!]! : schema;

/** The route's body schema as JSON Schema, with the top-level $ref resolved. */
export const bodyJsonSchema = (route: Route): JsonSchema => resolveRef(jsonSchemaOf(route.request!.body!));

export const typesOf = (schema: JsonSchema): string[] =>
  schema.anyOf ? schema.anyOf.flatMap(typesOf) : schema.type ? [schema.type].flat() : [];

/** A body that passes the schema's type checks (for reaching the handler with an unknown id). */
export function sampleValue(schema: JsonSchema): unknown {
  const [type] = typesOf(schema);
  if (type === "object") {
    return Object.fromEntries((schema.required ?? []).map((key) => [key, sampleValue(schema.properties?.[key] ?? {})]));
  }
  return { string: "{}", integer: 1, number: 1, boolean: true, array: [], null: null }[type ?? "null"];
}
