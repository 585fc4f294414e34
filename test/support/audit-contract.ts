/**
 * Behaviour of the audit log that GET /api/audit and the recording services rely on: the real one on PostgreSQL and
 * the in-memory fake run the same suite. Each case gets a fresh log.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Executor } from "../../db/client.ts";
import type { AuditDetails } from "../../db/schema.ts";
import type { AuditEntry, AuditLog } from "../../lib/audit/log.ts";
import type { AuditEventOut, AuditQuery } from "../../lib/schemas.ts";
import { auditQuery } from "../../lib/schemas.ts";

export type AuditContractSetup = () => Promise<{ audit: AuditLog; executor: Executor; close(): Promise<void> }>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function describeAuditLogContract(name: string, setup: AuditContractSetup): void {
  describe(`Audit log contract: ${name}`, () => {
    async function withLog(test: (env: Awaited<ReturnType<AuditContractSetup>> & { record(entry: AuditEntry): Promise<void> }) => Promise<void>) {
      const env = await setup();
      try {
        await test({ ...env, record: (entry) => env.audit.record(env.executor, entry) });
      } finally {
        await env.close();
      }
    }
    /** The query as GET /api/audit parses it from its query string. */
    const query = (params: Record<string, string> = {}): AuditQuery => auditQuery.parse(params);
    /** Every event the filters select, page by page; fails if a page repeats an event. */
    async function everyPage(audit: AuditLog, params: Record<string, string>): Promise<AuditEventOut[]> {
      const seen: AuditEventOut[] = [];
      let cursor: string | null = null;
      do {
        const page: Awaited<ReturnType<AuditLog["list"]>> = await audit.list(query({ ...params, ...(cursor && { cursor }) }));
        assert.ok(page.events.length <= Number(params.limit ?? 100));
        seen.push(...page.events);
        cursor = page.next_cursor;
      } while (cursor);
      assert.equal(new Set(seen.map((event) => event.id)).size, seen.length, "no event is on two pages");
      return seen;
    }

    it("an event reads back as recorded: who, when, what, and null ids where none were given", () =>
      withLog(async ({ audit, record }) => {
        const before = Date.now();
        await record({ actor: "alice", kind: "device.created", deviceId: 7, modelId: 3, details: { key: "abcd1234", nested: { list: [1, "two", null] } } });
        await record({ actor: "system", kind: "rotation.scheduled", details: { queued_count: 0 } });
        const { events, next_cursor } = await audit.list(query());
        assert.equal(next_cursor, null);
        assert.deepEqual(
          events.map(({ id: _id, at: _at, ...rest }) => rest),
          [
            { actor: "system", kind: "rotation.scheduled", device_id: null, model_id: null, details: { queued_count: 0 } },
            { actor: "alice", kind: "device.created", device_id: 7, model_id: 3, details: { key: "abcd1234", nested: { list: [1, "two", null] } } },
          ],
        );
        for (const event of events) {
          assert.match(event.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
          assert.ok(Date.parse(event.at) >= before - 1000 && Date.parse(event.at) <= Date.now() + 1000, event.at);
        }
      }));

    it("pages newest first: limit events a page, next_cursor until the last page (null), every event once", () =>
      withLog(async ({ audit, record }) => {
        for (let i = 1; i <= 11; i++) await record({ actor: "alice", kind: "model.updated", modelId: i });
        const seen = await everyPage(audit, { limit: "3" });
        assert.deepEqual(seen.map((event) => event.model_id), [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
        const exact = await audit.list(query({ limit: "11" }));
        assert.equal(exact.events.length, 11);
        assert.equal(exact.next_cursor, null, "a page that ends with the last event has no next page");
        assert.equal((await audit.list(query())).events.length, 11, "the default page holds them all");
      }));

    it("filters by device, model and time, also combined", () =>
      withLog(async ({ audit, record }) => {
        await record({ actor: "alice", kind: "device.created", deviceId: 1, modelId: 10 });
        await record({ actor: "alice", kind: "device.created", deviceId: 2, modelId: 20 });
        await sleep(25);
        await record({ actor: "device:iotdevice-x-1", kind: "rotation.completed", deviceId: 1, modelId: 10 });
        await record({ actor: "alice", kind: "model.updated", modelId: 10 });
        const kindsOf = async (params: Record<string, string>) => (await everyPage(audit, { limit: "1", ...params })).map((event) => `${event.kind}/${event.device_id}`);
        assert.deepEqual(await kindsOf({ device_id: "1" }), ["rotation.completed/1", "device.created/1"]);
        assert.deepEqual(await kindsOf({ model_id: "10" }), ["model.updated/null", "rotation.completed/1", "device.created/1"]);
        assert.deepEqual(await kindsOf({ device_id: "1", model_id: "20" }), []);
        assert.deepEqual(await kindsOf({ device_id: "3" }), []);
        const completed = (await audit.list(query({ device_id: "1" }))).events[0]!;
        assert.deepEqual(await kindsOf({ since: completed.at }), ["model.updated/null", "rotation.completed/1"], "since is inclusive");
        assert.deepEqual(await kindsOf({ since: completed.at, model_id: "10", device_id: "1" }), ["rotation.completed/1"]);
        assert.deepEqual(await kindsOf({ since: "2999-01-01T00:00:00+02:00" }), []);
      }));

    it("a cursor continues after its event, whatever was recorded since", () =>
      withLog(async ({ audit, record }) => {
        for (let i = 1; i <= 4; i++) await record({ actor: "alice", kind: "device.updated", deviceId: i });
        const first = await audit.list(query({ limit: "2" }));
        assert.deepEqual(first.events.map((event) => event.device_id), [4, 3]);
        await record({ actor: "alice", kind: "device.updated", deviceId: 5 });
        const second = await audit.list(query({ limit: "2", cursor: first.next_cursor! }));
        assert.deepEqual(second.events.map((event) => event.device_id), [2, 1]);
        assert.equal(second.next_cursor, null);
      }));

    it("refuses details that name a secret, and keeps nothing of that event", () =>
      withLog(async ({ audit, record }) => {
        const named: AuditDetails[] = [{ client_secret: "x" }, { nested: { Password: "x" } }, { list: [{ access_token: "x" }] }];
        for (const details of named) {
          await assert.rejects(record({ actor: "alice", kind: "device.updated", deviceId: 1, details }), /secret has no place/);
        }
        assert.deepEqual((await audit.list(query())).events, []);
      }));
  });
}
