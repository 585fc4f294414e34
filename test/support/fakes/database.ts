/**
 * A DatabaseHandle for the few places that query the database directly (health, client repair): every statement
 * answers one row, or, with `up = false`, fails as an unreachable PostgreSQL does (503 at the edge).
 */
import { drizzle } from "drizzle-orm/pg-proxy";
import type { DatabaseHandle } from "../../../db/client.ts";
import * as schema from "../../../db/schema.ts";

export type FakeDatabase = DatabaseHandle & { server: { up: boolean } };

export function fakeDatabase(): FakeDatabase {
  const server = { up: true };
  const answer = async () => {
    if (!server.up) throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    return { rows: [[1]] };
  };
  const db = drizzle(answer, { schema });
  return {
    server,
    db,
    kind: "postgres",
    listen: async () => async () => {},
    advisoryLock: () => ({ held: async () => true, release: async () => {} }),
    migrate: async () => [],
    rawTexts: async () => (await answer()).rows.map((row) => row.map((value) => Buffer.from(String(value)))),
    close: async () => {},
  };
}
