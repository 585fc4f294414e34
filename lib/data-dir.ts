import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** A value the embedded mode generates once and keeps in DATA_DIR (mode 0600), e.g. the encryption key. */
export function readOrCreateSecretFile(path: string, generate: () => string): { value: string; created: boolean } {
  try {
    return { value: readFileSync(path, "utf8").trim(), created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  mkdirSync(dirname(path), { recursive: true });
  const value = generate();
  try {
    writeFileSync(path, value + "\n", { mode: 0o600, flag: "wx" });
    return { value, created: true };
  } catch (error) {
    // Another process created it first: use theirs.
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return { value: readFileSync(path, "utf8").trim(), created: false };
    throw error;
  }
}
