/**
 * A JSON log line made readable in a terminal: `12:00:00.000 INFO  message key=value …`.
 * pino-pretty does this and more, but brings fifteen packages for a convenience of development.
 */
export function prettyLine(line: string): string {
  const { time, level, message, ...fields } = JSON.parse(line) as Record<string, unknown>;
  const rest = Object.entries(fields).map(([key, value]) => ` ${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  return `${String(time).slice(11, 23)} ${String(level).toUpperCase().padEnd(5)} ${message}${rest.join("")}`;
}
