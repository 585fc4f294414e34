/**
 * The audit trail as an admin reads it (GET /api/audit) after using the product on a real PostgreSQL: each action
 * leaves its event with the right actor, refused requests leave none, paging visits each event once while more are
 * recorded, and no secret ever appears in it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import { auditEvents } from "../db/schema.ts";
import type { ServiceOverrides } from "../lib/context.ts";
import type { IdentityProvider } from "../lib/identity/provider.ts";
import { expireNow } from "./support/fleet.ts";
import { ADMIN_TOKEN, createTestApp, type TestApp } from "./support/app.ts";
import { fakeNotifier } from "./support/fakes/notifier.ts";
import { buildImage } from "./support/firmware-image.ts";

type Event = { id: number; at: string; actor: string; kind: string; device_id: number | null; model_id: number | null; details: Record<string, unknown> };

const WIFI_PASSWORD = "wifi-password-never-audited";
const ENV = { DEVICE_MQTT_URL: "mqtt://broker.test:1883", WIFI_SSID: "audit-wifi", WIFI_PASSWORD, ROTATION_SCHEDULER: "external" };

/** An app whose rotation notices always reach the broker (a fake one: these tests are about what is recorded). */
const auditedApp = (overrides: ServiceOverrides = {}) =>
  createTestApp({ env: ENV, overrides: { notifier: fakeNotifier(), ...overrides } });

async function ok<T = Record<string, unknown>>(response: Response | Promise<Response>, status = 200): Promise<T> {
  const answer = await response;
  const text = await answer.text();
  assert.equal(answer.status, status, text);
  return (text ? JSON.parse(text) : null) as T;
}

/** Every event the query selects, newest first, read page by page. */
async function allEvents(app: TestApp, search = "", limit = 50): Promise<Event[]> {
  const events: Event[] = [];
  let cursor: string | null = null;
  do {
    const page: { events: Event[]; next_cursor: string | null } = await ok(
      app.call("GET", `/api/audit?limit=${limit}${search && `&${search}`}${cursor ? `&cursor=${cursor}` : ""}`),
    );
    events.push(...page.events);
    cursor = page.next_cursor;
  } while (cursor);
  return events;
}

const summary = (events: Event[]) => events.map((event) => `${event.actor} ${event.kind}`).reverse();

async function tokenFor(app: TestApp, clientId: string, secret: string): Promise<string> {
  const body = new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: secret });
  const answer = await ok<{ access_token: string }>(app.fetch(new Request("http://iot.test/oauth2/token", { method: "POST", body })));
  return answer.access_token;
}

const asDevice = (app: TestApp, token: string, path: string) => app.call("GET", path, { token });

/** Uploads `body` as a model's firmware (a raw image, as curl --data-binary sends it), stable at once. */
const uploadFirmware = (app: TestApp, modelId: number, body: BodyInit) =>
  app.fetch(
    new Request(`http://iot.test/api/device-models/${modelId}/firmware?rollout=immediate`, {
      method: "POST",
      body,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
    }),
  );

describe("audit trail", () => {
  let app: TestApp;
  before(async () => {
    app = await auditedApp();
  });
  after(() => app.close());

  test("every admin action leaves its event, by the admin, in the order they happened; ids outlive what they name", async () => {
    const model = await ok<{ id: number }>(app.call("POST", "/api/device-models", { body: { code: "audited", name: "Audited" } }), 201);
    await ok(app.call("PUT", `/api/device-models/${model.id}`, { body: { name: "Audited again", config_schema: null } }));
    const device = await ok<{ id: number; key: string; client_id: string }>(
      app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: '{"deviceName": "A", "room": 1}' } }),
      201,
    );
    await ok(app.call("PUT", `/api/devices/${device.id}`, { body: { config: '{"deviceName": "B", "room": 1, "enableOTA": true}' } }));
    await ok(app.call("POST", `/api/devices/${device.id}/keycloak-sync`), 200);
    await app.services.identity.deleteClient(device.client_id);
    assert.equal((await ok<{ created: boolean }>(app.call("POST", `/api/devices/${device.id}/keycloak-sync`))).created, true);
    const upload = (version: string) =>
      ok<{ version_id: number }>(uploadFirmware(app, model.id, buildImage({ version, size: 4096 })));
    const first = await upload("1.0.0");
    const second = await upload("2.0.0");
    await ok(app.call("DELETE", `/api/device-models/${model.id}/firmware/versions/${first.version_id}`), 204);
    assert.deepEqual(await ok(app.call("POST", `/api/devices/${device.id}/rotate`)), { status: "queued" });
    assert.deepEqual(await ok(app.call("POST", "/api/rotation/trigger")), { queued_count: 0 });
    await ok(app.call("DELETE", `/api/devices/${device.id}`), 204);
    await ok(app.call("DELETE", `/api/device-models/${model.id}`), 204);

    const admin = "admin-api-token";
    const ofModel = await allEvents(app, `model_id=${model.id}`, 3);
    assert.deepEqual(summary(ofModel), [
      `${admin} model.created`,
      `${admin} model.updated`,
      `${admin} device.created`,
      `${admin} device.updated`,
      `${admin} device.client_recreated`,
      `${admin} firmware.uploaded`,
      `${admin} firmware.stable_changed`,
      `${admin} firmware.uploaded`,
      `${admin} firmware.stable_changed`,
      `${admin} firmware.version_deleted`,
      `${admin} rotation.triggered`,
      "system rotation.started",
      `${admin} device.deleted`,
      `${admin} model.deleted`,
    ]);
    const byKind = (kind: string) => ofModel.filter((event) => event.kind === kind).reverse();
    assert.deepEqual(byKind("model.updated")[0]!.details, { code: "audited", changed_fields: ["name"], name: "Audited again" });
    assert.deepEqual(byKind("device.created")[0]!.details, { key: device.key, client_id: device.client_id, model_code: "audited" });
    assert.deepEqual(byKind("device.updated")[0]!.details, { key: device.key, changed_fields: ["deviceName", "enableOTA"] });
    const [uploaded1, uploaded2] = byKind("firmware.uploaded");
    assert.deepEqual(
      [uploaded1!.details.version, uploaded1!.details.version_id, uploaded1!.details.new_version, uploaded1!.details.size],
      ["1.0.0", first.version_id, true, 4096],
    );
    assert.match(String(uploaded1!.details.sha256), /^[0-9a-f]{64}$/);
    assert.deepEqual([uploaded2!.details.version, uploaded2!.details.version_id], ["2.0.0", second.version_id]);
    assert.deepEqual(byKind("firmware.version_deleted")[0]!.details, { version: "1.0.0", version_id: first.version_id, sha256: uploaded1!.details.sha256 });
    assert.deepEqual(byKind("rotation.triggered")[0]!.details, { status: "queued", from: "OK" });

    // The deleted device's own events, found by its id; the fleet trigger names no device or model.
    assert.deepEqual(summary(await allEvents(app, `device_id=${device.id}`)), [
      `${admin} device.created`,
      `${admin} device.updated`,
      `${admin} device.client_recreated`,
      `${admin} rotation.triggered`,
      "system rotation.started",
      `${admin} device.deleted`,
    ]);
    const fleetTrigger = (await allEvents(app)).find((event) => event.kind === "rotation.triggered" && event.device_id === null);
    assert.deepEqual([fleetTrigger?.actor, fleetTrigger?.model_id, fleetTrigger?.details], [admin, null, { queued_count: 0 }]);
  });

  test("a refused or failed request leaves no event", async () => {
    const model = await ok<{ id: number }>(app.call("POST", "/api/device-models", { body: { code: "refusals", name: "Refusals" } }), 201);
    const before_ = (await allEvents(app)).length;
    await ok(app.call("POST", "/api/device-models", { body: { code: "refusals", name: "Again" } }), 409);
    await ok(app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{not json" } }), 400);
    await ok(app.call("PUT", "/api/devices/999999", { body: { config: "{}" } }), 404);
    await ok(app.call("DELETE", "/api/devices/999999"), 404);
    await ok(uploadFirmware(app, model.id, "not an image"), 400);
    const { version_id } = await ok<{ version_id: number }>(uploadFirmware(app, model.id, buildImage({ version: "9.0.0", size: 4096 })));
    await ok(app.call("DELETE", `/api/device-models/${model.id}/firmware/versions/${version_id}`), 409);
    await ok(app.call("POST", "/api/devices/999999/rotate"), 404);
    assert.equal((await allEvents(app)).length, before_ + 2, "only the upload that succeeded: recorded, then stable");
  });

  test("paging by cursor visits every event exactly once while others are recorded", async () => {
    const { audit, database } = app.services;
    const modelId = 900_001;
    for (let i = 0; i < 120; i++) await audit.record(database.db, { actor: "system", kind: "model.updated", modelId, details: { n: i } });
    const existing = (await allEvents(app, `model_id=${modelId}`, 1000)).map((event) => event.id);
    assert.equal(existing.length, 120);

    let writing = true;
    const writer = (async () => {
      let n = 0;
      // New events of the same model, in their own transactions and in one of several, while the pages are read.
      while (writing) {
        await audit.record(database.db, { actor: "system", kind: "model.updated", modelId, details: { late: n++ } });
        await database.db.transaction(async (tx) => {
          for (let i = 0; i < 3; i++) await audit.record(tx, { actor: "system", kind: "model.updated", modelId, details: { late: n++ } });
        });
      }
      return n;
    })();
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { events: Event[]; next_cursor: string | null } = await ok(
        app.call("GET", `/api/audit?model_id=${modelId}&limit=7${cursor ? `&cursor=${cursor}` : ""}`),
      );
      seen.push(...page.events.map((event) => event.id));
      cursor = page.next_cursor;
    } while (cursor);
    writing = false;
    assert.ok((await writer) > 0, "events were recorded while paging");

    assert.equal(new Set(seen).size, seen.length, "no event on two pages");
    assert.deepEqual(existing.filter((id) => !seen.includes(id)), [], "every event that existed is visited");
    assert.ok((await allEvents(app, `model_id=${modelId}`, 1000)).length > 120);
  });

  test("the database refuses to change an event; deleting old ones (retention) stays possible", async () => {
    const { db } = app.services.database;
    await app.services.audit.record(db, { actor: "system", kind: "rotation.scheduled", details: { queued_count: 0 } });
    await assert.rejects(db.update(auditEvents).set({ actor: "someone else" }), (error: Error) => /append-only/.test(String(error.cause)));
    const { events } = await ok<{ events: Event[] }>(app.call("GET", "/api/audit?limit=1"));
    assert.deepEqual([events[0]!.actor, events[0]!.kind], ["system", "rotation.scheduled"]);
    const deleted = await db.delete(auditEvents).where(sql`${auditEvents.at} < '2000-01-01'`).returning();
    assert.deepEqual(deleted, []);
  });

  test("since selects the events at or after a time", async () => {
    const all = await allEvents(app);
    const middle = all[Math.floor(all.length / 2)]!;
    const since = await allEvents(app, `since=${encodeURIComponent(middle.at)}`);
    assert.deepEqual(since.map((event) => event.id), all.filter((event) => event.at >= middle.at).map((event) => event.id));
    assert.deepEqual(await allEvents(app, "since=2999-01-01T00:00:00Z"), []);
  });
});

describe("no secret in the audit trail", () => {
  /** Every secret seen, checked against the whole table (all columns, as text) at the end. */
  async function assertNoneRecorded(app: TestApp, secrets: string[]) {
    const rows = (await app.services.database.db.execute(sql`select t::text as row from ${auditEvents} t`)) as unknown as { row: string }[];
    assert.ok(rows.length > 0);
    const text = rows.map((row) => row.row).join("\n");
    for (const secret of new Set(secrets)) {
      assert.ok(secret.length >= 8, "a secret worth looking for");
      assert.ok(!text.includes(secret), `the secret ${secret.slice(0, 4)}… is in the audit trail`);
    }
  }

  async function deviceWithPackage(app: TestApp, code: string) {
    const model = await ok<{ id: number }>(app.call("POST", "/api/device-models", { body: { code, name: code } }), 201);
    const device = await ok<{ id: number; client_id: string }>(app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } }), 201);
    const pkg = await ok<{ client_secret: string; wifi_password: string }>(app.call("GET", `/api/devices/${device.id}/provisioning`));
    return { device, secret: pkg.client_secret, secrets: [pkg.client_secret, pkg.wifi_password] };
  }

  test("a device created, rotated (completed, then timed out) and deleted, with the overlapping secrets of the built-in provider", async () => {
    const app = await auditedApp();
    try {
      const { device, secret, secrets } = await deviceWithPackage(app, "secretive");
      const tokens: string[] = [];
      await ok(app.call("POST", `/api/devices/${device.id}/rotate`));
      tokens.push(await tokenFor(app, device.client_id, secret));
      const fresh = await ok<{ client_secret: string }>(asDevice(app, tokens[0]!, "/iot/provisioning"));
      assert.notEqual(fresh.client_secret, secret);
      tokens.push(await tokenFor(app, device.client_id, fresh.client_secret));
      await ok(asDevice(app, tokens[1]!, "/iot/config"));

      await ok(app.call("POST", `/api/devices/${device.id}/rotate`));
      const third = await ok<{ client_secret: string }>(asDevice(app, tokens[1]!, "/iot/provisioning"));
      await expireNow(app);
      assert.equal((await app.services.rotation.runCycle()).timed_out, 1);
      await ok(app.call("DELETE", `/api/devices/${device.id}`), 204);

      const events = await allEvents(app, `device_id=${device.id}`);
      const actor = `device:${device.client_id}`;
      assert.deepEqual(summary(events), [
        "admin-api-token device.created",
        "admin-api-token rotation.triggered",
        "system rotation.started",
        `${actor} rotation.secret_issued`,
        `${actor} rotation.completed`,
        "admin-api-token rotation.triggered",
        "system rotation.started",
        `${actor} rotation.secret_issued`,
        "system rotation.timed_out",
        "admin-api-token device.deleted",
      ]);
      assert.equal(events.find((event) => event.kind === "rotation.timed_out")!.details.unconfirmed, true);
      await assertNoneRecorded(app, [...secrets, fresh.client_secret, third.client_secret, ...tokens, ADMIN_TOKEN]);
    } finally {
      await app.close();
    }
  });

  test("a rotation that restores the previous secret on timeout (a provider that cannot keep two)", async () => {
    const app = await auditedApp({ identity: (real: IdentityProvider) => ({ ...real, keepsPreviousSecret: async () => false }) });
    try {
      const { device, secret, secrets } = await deviceWithPackage(app, "restoring");
      await ok(app.call("POST", `/api/devices/${device.id}/rotate`));
      const token = await tokenFor(app, device.client_id, secret);
      const fresh = await ok<{ client_secret: string }>(asDevice(app, token, "/iot/provisioning"));
      assert.notEqual(fresh.client_secret, secret);
      await expireNow(app);
      assert.equal((await app.services.rotation.runCycle()).timed_out, 1);
      assert.equal(await app.services.identity.getSecret(device.client_id), secret, "the previous secret is back");

      const events = await allEvents(app, `device_id=${device.id}`);
      assert.deepEqual(summary(events).slice(-3), [`device:${device.client_id} rotation.secret_issued`, "system rotation.secret_restored", "system rotation.timed_out"]);
      await assertNoneRecorded(app, [...secrets, fresh.client_secret, token, ADMIN_TOKEN]);
    } finally {
      await app.close();
    }
  });
});
