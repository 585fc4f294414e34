/**
 * One answer of GET /api/devices/{id}/logs, in the reference deployment's shape. The web UI polls with the previous
 * `window_end` as `start`, so the window is cut where no line can be repeated or skipped:
 * - `window_end` is the last line's millisecond + 1 (the API's precision), and a page never ends inside a millisecond
 *   whose lines it does not all hold (a full page gives back its last, incomplete millisecond);
 * - the window ends before `visibleUntil`, the oldest line this process still holds in memory, so no line can be
 *   stored later with a time the window already covered.
 */
export type LogPage = {
  logs: { timestamp: string; message: string }[];
  has_more: boolean;
  window_start: string;
  window_end: string;
};

export type PageRow = { ts: Date; message: string };

export type PageQuery = { start: Date; end: Date; query?: string; limit: number };

/** Reads lines in [start, end) oldest first, at most `limit` of them. */
export type ReadLines = (range: { start: Date; end: Date; query?: string; limit: number }) => Promise<PageRow[]>;

const ms = (date: Date) => date.getTime();

export async function readPage(read: ReadLines, request: PageQuery, visibleUntil: Date): Promise<LogPage> {
  const { start, limit, query } = request;
  const end = new Date(Math.max(ms(start), Math.min(ms(request.end), ms(visibleUntil))));
  const rows = await read({ start, end, query, limit: limit + 1 });
  let logs = rows;
  let hasMore = false;
  if (rows.length > limit) {
    hasMore = true;
    const cut = ms(rows[limit]!.ts);
    logs = rows.slice(0, limit).filter((row) => ms(row.ts) < cut);
    // More lines in one millisecond than a page holds: that millisecond whole, however many lines it has.
    if (logs.length === 0) logs = await read({ start: new Date(cut), end: new Date(cut + 1), query, limit: Number.MAX_SAFE_INTEGER });
  }
  const last = logs.at(-1);
  const windowEnd = last ? new Date(ms(last.ts) + 1) : end;
  return {
    logs: logs.map((row) => ({ timestamp: row.ts.toISOString(), message: row.message })),
    has_more: hasMore,
    window_start: start.toISOString(),
    window_end: windowEnd.toISOString(),
  };
}
