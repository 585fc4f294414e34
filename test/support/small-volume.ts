import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type SmallVolume = { path: string; makeReadOnly(): void; remove(): void };

/**
 * A real file system of `size` (e.g. "1m") that fills up: a tmpfs mounted for the test. Mounting needs root (the
 * development machines and CI run as root); without it the test fails here, saying so, rather than skipping.
 */
export function mountSmallVolume(size: string): SmallVolume {
  const path = mkdtempSync(join(tmpdir(), "iot-volume-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", path], { stdio: "pipe" });
  } catch (error) {
    rmSync(path, { recursive: true, force: true });
    throw new Error(`could not mount a ${size} tmpfs at ${path} (the test needs root): ${(error as Error).message}`);
  }
  return {
    path,
    makeReadOnly: () => execFileSync("mount", ["-o", "remount,ro", path], { stdio: "pipe" }),
    remove() {
      execFileSync("umount", [path], { stdio: "pipe" });
      rmSync(path, { recursive: true, force: true });
    },
  };
}
