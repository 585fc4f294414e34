import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), "utf8");

test("the configuration reference (docs/configuration.md) lists exactly the settings lib/config.ts reads", () => {
  const source = read("lib/config.ts");
  const schema = source.slice(source.indexOf("const envSchema = z.object({"), source.indexOf("\n});", source.indexOf("const envSchema")));
  const settings = [...schema.matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!).sort();
  assert.ok(settings.length > 20, `found ${settings.length} settings in lib/config.ts`);

  const reference = read("docs/configuration.md");
  const documented = [...reference.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|/gm)].map((m) => m[1]!).sort();
  assert.deepEqual(documented, settings);
});
