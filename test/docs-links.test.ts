/** The README and docs/ link to each other; every relative link must lead to a file, and every #anchor to a heading. */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const pages = ["README.md", ...readdirSync(join(root, "docs")).filter((name) => name.endsWith(".md")).map((name) => `docs/${name}`)];

const withoutCode = (text: string) => text.replace(/```[\s\S]*?```/g, "").replace(/`[^`\n]*`/g, "");
// GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens.
const anchorOf = (heading: string) => heading.trim().toLowerCase().replace(/[^\w\- ]/g, "").replaceAll(" ", "-");
const anchorsOf = (page: string) =>
  new Set([...withoutCode(readFileSync(join(root, page), "utf8")).matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1]!)));

test("every relative link in the README and docs/ leads to a file, and every anchor to a heading", () => {
  const broken: string[] = [];
  for (const page of pages) {
    for (const [, target] of withoutCode(readFileSync(join(root, page), "utf8")).matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!) || target!.startsWith("<")) continue;
      const [path, anchor] = target!.split("#") as [string, string | undefined];
      const file = path === "" ? page : relative(root, join(root, dirname(page), path));
      if (!existsSync(join(root, file))) broken.push(`${page}: ${target} (no file ${file})`);
      else if (anchor && file.endsWith(".md") && !anchorsOf(file).has(anchor)) broken.push(`${page}: ${target} (no heading #${anchor} in ${file})`);
    }
  }
  assert.ok(pages.length > 5, `found only ${pages.join(", ")}`);
  assert.deepEqual(broken, []);
});
