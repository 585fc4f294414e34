/**
 * `nvs-image` as an operator runs it: a real process, real files, compared with Espressif's output.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { fixturePath } from "./support/fixtures.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const vectorPath = (name: string) => fixturePath(`nvs/${name}`);
const work = mkdtempSync(join(tmpdir(), "cli-nvs-"));

type Run = { code: number; stdout: string; stderr: string };

function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "cli.ts", ...args], { cwd: root, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

function assertFailedCleanly(run: Run, output: string, reason: RegExp) {
  assert.notEqual(run.code, 0, "exit code");
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0]!, reason);
  assert.equal(existsSync(output), false, "no output file is written");
}

describe("cli nvs-image", () => {
  after(() => rmSync(work, { recursive: true, force: true }));

  it("writes the same bytes as Espressif's nvs_partition_gen for the same CSV", async () => {
    const output = join(work, "prov-0x4000.bin");
    const run = await cli("nvs-image", "--csv", vectorPath("prov-basic.csv"), "--size", "0x4000", "--output", output);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /wrote 16384 bytes/);
    assert.ok(readFileSync(output).equals(readFileSync(vectorPath("prov-basic-0x4000.bin"))), "byte-identical to the vector");
  });

  it("a size that is not a multiple of 0x1000 (or too small, or not a number) fails with a one-line reason", async () => {
    const cases = [
      { size: "0x3800", reason: /^error: .*multiple of 0x1000.*at least 0x3000/ },
      { size: "0x2000", reason: /^error: .*at least 0x3000/ },
      { size: "big", reason: /^error: --size must be a number/ },
    ];
    await Promise.all(
      cases.map(async ({ size, reason }, i) => {
        const output = join(work, `bad-size-${i}.bin`);
        const run = await cli("nvs-image", "--csv", vectorPath("prov-basic.csv"), "--size", size, "--output", output);
        assertFailedCleanly(run, output, reason);
      }),
    );
  });

  it("an unsupported CSV fails with a one-line reason naming the line", async () => {
    const csv = join(work, "u8.csv");
    writeFileSync(csv, "key,type,encoding,value\nprov,namespace,,\ncount,data,u8,7\n");
    const output = join(work, "u8.bin");
    const run = await cli("nvs-image", "--csv", csv, "--size", "0x3000", "--output", output);
    assertFailedCleanly(run, output, /^error: line 3: encoding "u8" is not supported/);
  });

  it("a missing option fails without writing anything", async () => {
    const output = join(work, "no-size.bin");
    const run = await cli("nvs-image", "--csv", vectorPath("prov-basic.csv"), "--output", output);
    assertFailedCleanly(run, output, /^error: --csv, --size and --output are required/);
  });
});
