import type { Database, Executor, Transaction } from "../db/client.ts";
import { createAsyncScope } from "./async-scope.ts";

const active = createAsyncScope<Transaction>();

/**
 * Runs `work` in a transaction that code further down joins through `executorFor`, without passing it along.
 * The rotation engine calls the identity provider while it holds a device row lock; the built-in provider stores
 * its secrets in the same database and must write inside that transaction: PGlite has a single connection, so a
 * second one would wait forever, and on PostgreSQL the secret change then commits together with the row.
 */
export function inTransaction<T>(db: Database, work: (tx: Transaction) => Promise<T>): Promise<T> {
  return db.transaction((tx) => active.run(tx, () => work(tx)));
}

/** The transaction started by inTransaction in this async context, else the database itself. */
export const executorFor = (db: Database): Executor => active.get() ?? db;
