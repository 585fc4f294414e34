import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { SQL } from "drizzle-orm";
import { type PgDatabase, PgDialect, type PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { acquireDataDirLock } from "./data-dir-lock.ts";
import * as schema from "./schema.ts";

export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;
export type Transaction = Parameters<Parameters<Database["transaction"]>[0]>[0];
/** Either the database or a transaction on it: services accept both so callers can compose them. */
export type Executor = Database | Transaction;

export type DatabaseHandle = {
  db: Database;
  kind: "postgres" | "pglite";
  /**
   * LISTEN on a channel: `onNotify` runs for every NOTIFY on it (from any process on PostgreSQL); resolves with the way
   * to stop. postgres.js keeps one extra connection for it and listens again after a reconnect.
   */
  listen(channel: string, onNotify: () => void): Promise<() => Promise<void>>;
  /**
   * A session advisory lock `id` on a connection of its own: `held()` takes it when free and answers whether this
   * process holds it now (false again once that connection was lost). PGlite has one process: always true.
   */
  advisoryLock(id: number): { held(): Promise<boolean>; release(): Promise<void> };
  /**
   * Applies pending migrations; on PostgreSQL under an advisory lock so two replicas cannot migrate at once. Resolves
   * with the warnings they raised, such as an optional index left out (migration 0011), for the caller to log.
   */
  migrate(): Promise<string[]>;
  /**
   * The rows of `query`, whose columns are all text, each value the UTF-8 bytes as the database answered them (null for
   * NULL): texts passed on as they are, such as the rotation dashboard's megabytes of JSON, are never decoded into
   * strings and encoded again (on postgres.js they are slices of what the socket read).
   */
  rawTexts(query: SQL): Promise<(Uint8Array | null)[][]>;
  close(): Promise<void>;
};

const dialect = new PgDialect();

const migrationsFolder = fileURLToPath(new URL("./migrations", import.meta.url));
export const MIGRATION_LOCK_ID = 7_341_001;
const APPLICATION_NAME = "iot-support-backend";

/** Rows of a statement run with execute(), from either driver (postgres.js answers an array, PGlite an object with `rows`). */
export function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : ((result as { rows?: T[] }).rows ?? [])) as T[];
}

/** How long the pool waits on PostgreSQL (lib/config.ts); without them (tests, benches) nothing times out. */
export type DatabaseTimeouts = {
  DATABASE_CONNECT_TIMEOUT_MS: number;
  DATABASE_STATEMENT_TIMEOUT_MS: number;
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: number;
  DATABASE_POOL_WAIT_MS: number;
};

/** The server cancels a statement at the statement timeout; a client still waiting this much later gives up on it. */
const ANSWER_GRACE_MS = 1000;

// postgres.js waits up to 20 s before each new connection attempt once attempts keep failing, and a query waiting
// for that connection waits as long. Attempts are only made for queries that need them, so a short cap is cheap.
const reconnectDelaySeconds = (failures: number) => Math.min(0.01 * 3 ** failures, 0.5);

const sessionOptions = {
  onnotice: () => {},
  // No array columns here: the lookup of array types would cost every new connection a round trip.
  fetch_types: false,
  // No JIT: it compiles a statement the planner expects to be costly before running it, and its 0.5 s and more is
  // never earned back here. The dashboard's statements are planned for every chunk rendered from the devices, whatever
  // few are (lib/rotation/dashboard.ts): with JIT one that rendered nothing took 0.6 s instead of 6 ms.
  connection: { application_name: APPLICATION_NAME, jit: "off" },
};

function poolOptions(timeouts: DatabaseTimeouts): postgres.Options<{}> {
  return {
    connect_timeout: timeouts.DATABASE_CONNECT_TIMEOUT_MS / 1000,
    // The two client-side deadlines (patches/postgres+3.4.9.patch): a frozen server or a dead network path answers
    // nothing at all, so only the client can notice; the server-side statement timeout fires first when it is alive.
    query_timeout: (timeouts.DATABASE_STATEMENT_TIMEOUT_MS + ANSWER_GRACE_MS) / 1000,
    queue_timeout: timeouts.DATABASE_POOL_WAIT_MS / 1000,
    backoff: reconnectDelaySeconds,
    connection: {
      ...sessionOptions.connection,
      statement_timeout: timeouts.DATABASE_STATEMENT_TIMEOUT_MS,
      idle_in_transaction_session_timeout: timeouts.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    },
  };
}

export function openPostgres(url: string, options: { max?: number; timeouts?: DatabaseTimeouts } = {}): DatabaseHandle {
  const client = postgres(url, { ...sessionOptions, max: options.max ?? 10, ...(options.timeouts && poolOptions(options.timeouts)) });
  const db = drizzlePostgres(client, { schema });
  return {
    db: db as unknown as Database,
    kind: "postgres",
    async listen(channel, onNotify) {
      const { unlisten } = await client.listen(channel, () => onNotify(), onNotify);
      return unlisten;
    },
    advisoryLock(id) {
      const session = postgres(url, { ...sessionOptions, max: 1, ...(options.timeouts && { connect_timeout: options.timeouts.DATABASE_CONNECT_TIMEOUT_MS / 1000 }) });
      return {
        async held() {
          // After a reconnect the session is new: the lock is gone with the old one, and taken again here if free.
          const [mine] = await session`select exists (select 1 from pg_locks where locktype = 'advisory' and objid = ${id} and pid = pg_backend_pid() and granted) as held`;
          if (mine?.held) return true;
          const [taken] = await session`select pg_try_advisory_lock(${id}) as taken`;
          return Boolean(taken?.taken);
        },
        release: () => session.end({ timeout: 5 }),
      };
    },
    async migrate() {
      // A connection of its own, without the pool's timeouts: a migration may rewrite a large table, and the lock
      // waits for as long as another replica's migration runs.
      const warnings: string[] = [];
      const session = postgres(url, {
        ...sessionOptions,
        onnotice: (notice) => {
          if (notice.severity === "WARNING") warnings.push(notice.message);
        },
        max: 1,
        ...(options.timeouts && { connect_timeout: options.timeouts.DATABASE_CONNECT_TIMEOUT_MS / 1000 }),
        connection: { ...sessionOptions.connection, statement_timeout: 0, idle_in_transaction_session_timeout: 0 },
      });
      try {
        await session`select pg_advisory_lock(${MIGRATION_LOCK_ID})`;
        await migratePostgres(drizzlePostgres(session, { schema }), { migrationsFolder });
        return warnings;
      } finally {
        await session.end({ timeout: 5 });
      }
    },
    async rawTexts(query) {
      const { sql: text, params } = dialect.sqlToQuery(query);
      return client.unsafe(text, params as postgres.ParameterOrJSON<never>[]).raw();
    },
    close: () => client.end({ timeout: 5 }),
  };
}

/** A PGlite database at `path`, with the extension the migrations use: pg_trgm, the device search's index (0011). */
export async function createPgliteClient(path: string) {
  const [{ PGlite }, { pg_trgm }] = await Promise.all([import("@electric-sql/pglite"), import("@electric-sql/pglite/contrib/pg_trgm")]);
  return PGlite.create(path, { extensions: { pg_trgm } });
}

/** The embedded database: PGlite files under DATA_DIR. Only one process may open it (see data-dir-lock.ts). */
async function openPglite(dataDir: string): Promise<DatabaseHandle> {
  mkdirSync(dataDir, { recursive: true });
  const releaseLock = acquireDataDirLock(dataDir);
  try {
    // Loaded only in embedded mode: a server on PostgreSQL starts faster without the WASM database.
    const [client, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
      createPgliteClient(`${dataDir}/pglite`),
      import("drizzle-orm/pglite"),
      import("drizzle-orm/pglite/migrator"),
    ]);
    const db = drizzlePglite(client, { schema });
    return {
      db: db as unknown as Database,
      kind: "pglite",
      async listen(channel, onNotify) {
        const unlisten = await client.listen(channel, () => onNotify());
        return async () => unlisten();
      },
      advisoryLock: () => ({ held: async () => true, release: async () => {} }),
      async migrate() {
        await migratePglite(db, { migrationsFolder });
        return [];
      },
      async rawTexts(query) {
        const { sql: text, params } = dialect.sqlToQuery(query);
        const { rows } = await client.query<(string | null)[]>(text, params, { rowMode: "array" });
        return rows.map((row) => row.map((value) => (value === null ? null : Buffer.from(value))));
      },
      async close() {
        await client.close();
        releaseLock();
      },
    };
  } catch (error) {
    releaseLock();
    throw error;
  }
}

export function openDatabase(config: { DATABASE_URL?: string; DATA_DIR: string } & DatabaseTimeouts): Promise<DatabaseHandle> {
  return config.DATABASE_URL ? Promise.resolve(openPostgres(config.DATABASE_URL, { timeouts: config })) : openPglite(config.DATA_DIR);
}
