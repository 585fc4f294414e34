import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { isProcessRunning } from "./process-alive.ts";

/**
 * Two processes on one PGlite data directory lose committed rows, so the directory is claimed with a lock file
 * holding the owner's pid. A lock left by a process that no longer runs is taken over.
 */
export function acquireDataDirLock(dataDir: string): () => void {
  const path = `${dataDir}/pglite.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: "wx" });
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number(readFileSync(path, "utf8"));
      if (owner === process.pid || isProcessRunning(owner)) {
        throw new Error(
          `The embedded database in ${dataDir} is in use by process ${owner} (the server?). ` +
            "Stop it first, or set DATABASE_URL to use PostgreSQL.",
        );
      }
      rmSync(path, { force: true });
    }
  }
  throw new Error(`Could not lock ${dataDir}`);
}
