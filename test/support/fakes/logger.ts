import type { Logger } from "../../../lib/logger.ts";

export type LogLine = { level: "debug" | "info" | "warn" | "error"; message: string; fields: Record<string, unknown> };

/** A Logger that keeps its lines, so a test can see what an operator would read. */
export function recordingLogger(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine["level"]) => (message: string, fields: Record<string, unknown> = {}) => void lines.push({ level, message, fields });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
