/**
 * Which way imports point (ARCHITECTURE.md): lib/http is the thin fetch edge that only server.ts, functions/ and
 * tests use; db/ knows nothing of ours; nothing under lib/ reaches up into the routes or the composition roots; and
 * there are no loops. `import type` counts like any other import: a loop of types is still a knot to untie.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const toPosix = (path: string) => path.split(sep).join("/");

function tsFilesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => toPosix(relative(ROOT, join(entry.parentPath, entry.name))));
}

const files = [...tsFilesUnder("lib"), ...tsFilesUnder("db"), ...tsFilesUnder("functions"), "server.ts", "cli.ts"].sort();

/** `from "…"` of import and export statements, `import "…"` and `import("…")`; only our own (relative) modules. */
const SPECIFIER = /\bfrom\s*["'](\.[^"']*)["']|\bimport\s*\(\s*["'](\.[^"']*)["']\s*\)|^\s*import\s*["'](\.[^"']*)["']/gm;

function importsOf(file: string): string[] {
  const source = readFileSync(join(ROOT, file), "utf8");
  return [...source.matchAll(SPECIFIER)].map((match) => toPosix(normalize(join(dirname(file), (match[1] ?? match[2] ?? match[3])!))));
}

const graph = new Map(files.map((file) => [file, importsOf(file)]));

const inHttp = (file: string) => file.startsWith("lib/http/");
const inLib = (file: string) => file.startsWith("lib/");
const isRouteOrRoot = (file: string) => file.startsWith("functions/") || file === "server.ts" || file === "cli.ts";

const RULES: { name: string; breaks: (from: string, to: string) => boolean }[] = [
  { name: "lib/ (outside lib/http) imports lib/http", breaks: (from, to) => inLib(from) && !inHttp(from) && inHttp(to) },
  { name: "db/ imports lib/", breaks: (from, to) => from.startsWith("db/") && inLib(to) },
  { name: "lib/ imports functions/, server.ts or cli.ts", breaks: (from, to) => inLib(from) && isRouteOrRoot(to) },
];

/** Strongly connected components (Tarjan) with more than one file, or a file importing itself. */
function cycles(): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (file: string) => {
    index.set(file, index.size);
    low.set(file, index.get(file)!);
    stack.push(file);
    onStack.add(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      if (!index.has(next)) {
        visit(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(file, Math.min(low.get(file)!, index.get(next)!));
      }
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1 || graph.get(file)!.includes(file)) found.push(component.sort());
  };
  for (const file of files) if (!index.has(file)) visit(file);
  return found;
}

test("the import parser sees the imports (a sanity check, so the rules below cannot pass on an empty graph)", () => {
  assert.ok(graph.get("server.ts")!.includes("functions/index.ts"));
  assert.ok(graph.get("lib/context.ts")!.includes("db/client.ts"));
});

for (const rule of RULES) {
  test(`no file breaks the rule: ${rule.name}`, () => {
    const breaches = [...graph].flatMap(([from, imports]) => imports.filter((to) => rule.breaks(from, to)).map((to) => `${from} → ${to}`));
    assert.deepEqual(breaches, []);
  });
}

test("there are no import cycles", () => {
  const knots = cycles().map((component) => component.join(" ⇄ "));
  assert.deepEqual(knots, []);
});
