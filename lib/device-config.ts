import type { devices } from "../db/schema.ts";
import type { FieldError } from "./errors.ts";

/** The config's fields that are copied to columns of their own. */
export type CopiedFields = Pick<typeof devices.$inferSelect, "deviceName" | "deviceEntityId" | "enableOta">;

/** A device config's verdict: the copied fields, or why it is not accepted (the error envelope's message and errors). */
export type ConfigCheck = { ok: true; fields: CopiedFields } | { ok: false; message: string; errors: FieldError[] };

export const configRefused = (message: string, fieldMessage: string): ConfigCheck => ({
  ok: false,
  message,
  errors: [{ field: "config", message: fieldMessage }],
});

/** Where a config error is, as a JSON pointer into the config ("/deviceName"; "the config" for the config itself). */
const pointerOf = (field: string) => (field === "config" ? "the config" : `/${field.replace(/^config\./, "").replaceAll(".", "/")}`);

/**
 * A config that breaks its model's schema: the sentence names the first problem (the UI shows only the sentence),
 * with how many more there are; errors lists them all.
 */
export function configMismatch(errors: FieldError[]): ConfigCheck {
  const [first] = errors;
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : "";
  const message = first ? `Config validation failed: ${pointerOf(first.field)} ${first.message}${more}` : "Config validation failed";
  return { ok: false, message, errors };
}

/** A write to a model whose stored schema cannot be used (saved before a rule that now refuses it, say). */
export const modelSchemaRefused = (modelCode: string, problem: string) =>
  configRefused(`The schema of model "${modelCode}" is refused; save a corrected config_schema first.`, `cannot be checked: ${problem}`);

/** The copied fields of a parsed config: none when it is not an object or a field has another type. */
export function copiedFields(value: unknown): CopiedFields {
  const object = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  const text = (v: unknown) => (typeof v === "string" ? v : null);
  return {
    deviceName: text(object.deviceName),
    deviceEntityId: text(object.deviceEntityId),
    enableOta: typeof object.enableOTA === "boolean" ? object.enableOTA : null,
  };
}

/**
 * The top-level fields whose values differ between two config texts (what the audit trail says of a config change,
 * without the values, which may be anything an admin typed). A config that is not an object counts as the field "".
 */
export function changedConfigFields(before: string, after: string): string[] {
  const fieldsOf = (text: string): Record<string, unknown> => {
    try {
      const value: unknown = JSON.parse(text);
      return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : { "": value };
    } catch {
      return { "": text };
    }
  };
  const [old, next] = [fieldsOf(before), fieldsOf(after)];
  const names = [...new Set([...Object.keys(old), ...Object.keys(next)])].sort();
  return names.filter((name) => !Object.hasOwn(old, name) || !Object.hasOwn(next, name) || JSON.stringify(old[name]) !== JSON.stringify(next[name]));
}
