/** Unit tests of functions/api/device-models/** (one describe per route file). */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import downloadFirmware from "../../../../functions/api/device-models/[id]/firmware.get.ts";
import crashes from "../../../../functions/api/device-models/[id]/crashes.get.ts";
import uploadFirmware from "../../../../functions/api/device-models/[id]/firmware.post.ts";
import deleteModel from "../../../../functions/api/device-models/[id]/index.delete.ts";
import getModel from "../../../../functions/api/device-models/[id]/index.get.ts";
import putModel from "../../../../functions/api/device-models/[id]/index.put.ts";
import listModels from "../../../../functions/api/device-models/index.get.ts";
import createModel from "../../../../functions/api/device-models/index.post.ts";
import versionImage from "../../../../functions/api/device-models/[id]/firmware/versions/[vid]/image.get.ts";
import deleteVersion from "../../../../functions/api/device-models/[id]/firmware/versions/[vid]/index.delete.ts";
import getVersion from "../../../../functions/api/device-models/[id]/firmware/versions/[vid]/index.get.ts";
import getFleet from "../../../../functions/api/device-models/[id]/fleet.get.ts";
import listVersions from "../../../../functions/api/device-models/[id]/firmware/versions/index.get.ts";
import { runRoute } from "../../../../lib/http/app.ts";
import { buildImage } from "../../../support/firmware-image.ts";
import { ACCESS_COOKIE } from "../../../support/fakes/browser-session.ts";
import { BASE_URL } from "../../../support/fakes/index.ts";
import { ADMIN_TOKEN } from "../../../support/tokens.ts";
import { asAdmin, expectAdminOnly, expectError, request, unitApp, type UnitApp } from "../../harness.ts";

const SCHEMA = JSON.stringify({ type: "object", properties: { deviceName: { type: "string" } } });
const image = (version: string, options: { secureVersion?: number; elfSha256?: string } = {}) => buildImage({ version, size: 4096, ...options });
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const upload = (app: UnitApp, modelId: number, bytes: Uint8Array<ArrayBuffer>, query = "") =>
  app.run(uploadFirmware, asAdmin("POST", `/api/device-models/${modelId}/firmware${query}`, { body: new Blob([bytes]), headers: { "content-type": "application/octet-stream" } }));

type Version = { id: number; version: string; sha256: string; stable: boolean; notes: string | null; uploaded_by: string | null };

describe("functions/api/device-models/index.get.ts", () => {
  it("lists the models sorted by code, with their device counts", async () => {
    const app = unitApp();
    const zeta = await app.model("zeta");
    await app.model("alpha");
    await app.device({}, zeta.id);
    // Only what the route uses (uses: ["models"]) besides the edge's services.
    const response = await runRoute(listModels, asAdmin("GET", "/api/device-models"), { ...app.edge, models: app.services.models });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.count, 2);
    assert.deepEqual(body.device_models.map((m: { code: string; device_count: number }) => [m.code, m.device_count]), [["alpha", 0], ["zeta", 1]]);
  });

  it("pages by code with limit and cursor, searched by q; a bad limit or cursor is 400", async () => {
    const app = unitApp();
    for (const code of ["gamma", "alpha", "beta"]) await app.model(code);
    const run = (path: string) => runRoute(listModels, asAdmin("GET", path), { ...app.edge, models: app.services.models });
    const first = await (await run("/api/device-models?limit=2")).json();
    assert.deepEqual([first.device_models.map((m: { code: string }) => m.code), first.count], [["alpha", "beta"], 2]);
    const second = await (await run(`/api/device-models?cursor=${first.next_cursor}`)).json();
    assert.deepEqual([second.device_models.map((m: { code: string }) => m.code), second.next_cursor], [["gamma"], null]);
    const found = await (await run("/api/device-models?q=ETA")).json();
    assert.deepEqual(found.device_models.map((m: { code: string }) => m.code), ["beta"]);
    for (const query of ["limit=1001", "cursor=abc", "q="]) await expectError(await app.run(listModels, asAdmin("GET", `/api/device-models?${query}`)), 400, "VALIDATION_FAILED");
  });

  it("is for admins only", () => expectAdminOnly(listModels, "GET", "/api/device-models"));
});

describe("functions/api/device-models/index.post.ts", () => {
  it("creates a model: 201 with the model", async () => {
    const app = unitApp();
    const response = await app.run(createModel, asAdmin("POST", "/api/device-models", { body: { code: "thermo", name: "Thermostat", config_schema: SCHEMA } }));
    assert.equal(response.status, 201);
    const body = await response.json();
    assert.deepEqual([body.code, body.name, body.config_schema, body.device_count], ["thermo", "Thermostat", SCHEMA, 0]);
    assert.equal(((await app.services.models.page({ limit: 1000 })).items).length, 1);
  });

  it("refuses a duplicate code with 409 DUPLICATE_MODEL_CODE", async () => {
    const app = unitApp();
    await app.model("thermo");
    await expectError(await app.run(createModel, asAdmin("POST", "/api/device-models", { body: { code: "thermo", name: "Again" } })), 409, "DUPLICATE_MODEL_CODE");
  });

  it("refuses bad input with 400 VALIDATION_FAILED naming the field, and stores nothing", async () => {
    const app = unitApp();
    for (const [body, field] of [
      [{ code: "Bad Code", name: "x" }, "code"],
      [{ code: "ok" }, "name"],
      [{ code: "ok", name: "x", extra: 1 }, "extra"],
      [{ code: "ok", name: "x", config_schema: "{not json" }, "config_schema"],
    ] as const) {
      const envelope = await expectError(await app.run(createModel, asAdmin("POST", "/api/device-models", { body })), 400, "VALIDATION_FAILED");
      assert.equal((envelope.details?.errors as { field: string }[])[0]?.field, field);
    }
    assert.deepEqual((await app.services.models.page({ limit: 1000 })).items, []);
  });

  it("refuses a body that is not JSON", async () => {
    const app = unitApp();
    const response = await app.run(createModel, asAdmin("POST", "/api/device-models", { body: "code=x", headers: { "content-type": "text/plain" } }));
    await expectError(response, 415, "UNSUPPORTED_MEDIA_TYPE");
  });

  it("is for admins only", () => expectAdminOnly(createModel, "POST", "/api/device-models", { body: { code: "x", name: "x" } }));
});

describe("functions/api/device-models/[id]/index.get.ts", () => {
  it("reads a model", async () => {
    const app = unitApp();
    const model = await app.model("thermo", SCHEMA);
    const response = await app.run(getModel, asAdmin("GET", `/api/device-models/${model.id}`));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), model);
  });

  it("answers 404 DEVICE_MODEL_NOT_FOUND for an unknown id, 404 for an id that is not one", async () => {
    const app = unitApp();
    await expectError(await app.run(getModel, asAdmin("GET", "/api/device-models/999")), 404, "DEVICE_MODEL_NOT_FOUND");
    await expectError(await app.run(getModel, asAdmin("GET", "/api/device-models/abc")), 404, "NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(getModel, "GET", "/api/device-models/1"));
});

describe("functions/api/device-models/[id]/index.put.ts", () => {
  it("changes the name and keeps the rest", async () => {
    const app = unitApp();
    const model = await app.model("thermo", SCHEMA);
    const response = await app.run(putModel, asAdmin("PUT", `/api/device-models/${model.id}`, { body: { name: "Renamed" } }));
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.deepEqual([body.name, body.code, body.config_schema], ["Renamed", "thermo", SCHEMA]);
  });

  it("answers 404 for an unknown model and 400 for bad input", async () => {
    const app = unitApp();
    const model = await app.model();
    await expectError(await app.run(putModel, asAdmin("PUT", "/api/device-models/999", { body: { name: "x" } })), 404, "DEVICE_MODEL_NOT_FOUND");
    await expectError(await app.run(putModel, asAdmin("PUT", `/api/device-models/${model.id}`, { body: { code: "new" } })), 400, "VALIDATION_FAILED");
    await expectError(await app.run(putModel, asAdmin("PUT", `/api/device-models/${model.id}`, { body: { config_schema: "[1," } })), 400, "VALIDATION_FAILED");
  });

  it("is for admins only", () => expectAdminOnly(putModel, "PUT", "/api/device-models/1", { body: { name: "x" } }));
});

describe("functions/api/device-models/[id]/index.delete.ts", () => {
  it("deletes a model: 204, then it is gone", async () => {
    const app = unitApp();
    const model = await app.model();
    const response = await app.run(deleteModel, asAdmin("DELETE", `/api/device-models/${model.id}`));
    assert.equal(response.status, 204);
    await expectError(await app.run(getModel, asAdmin("GET", `/api/device-models/${model.id}`)), 404, "DEVICE_MODEL_NOT_FOUND");
  });

  it("answers 409 MODEL_HAS_DEVICES while devices use it, 404 for an unknown one", async () => {
    const app = unitApp();
    const model = await app.model();
    await app.device({}, model.id);
    await expectError(await app.run(deleteModel, asAdmin("DELETE", `/api/device-models/${model.id}`)), 409, "MODEL_HAS_DEVICES");
    await expectError(await app.run(deleteModel, asAdmin("DELETE", "/api/device-models/999")), 404, "DEVICE_MODEL_NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(deleteModel, "DELETE", "/api/device-models/1"));
});

describe("functions/api/device-models/[id]/firmware.post.ts", () => {
  it("stores a valid image (raw or multipart); ?rollout=immediate sets the version and sends every device of the model a firmware notice", async () => {
    const app = unitApp();
    const model = await app.model();
    const { device } = await app.device({}, model.id);
    const path = `/api/device-models/${model.id}/firmware?rollout=immediate`;
    const raw = await app.run(uploadFirmware, asAdmin("POST", path, { body: new Blob([image("1.2.3")]), headers: { "content-type": "application/octet-stream" } }));
    assert.equal(raw.status, 200);
    const answer = await raw.json();
    assert.deepEqual(answer, { id: model.id, code: model.code, firmware_version: "1.2.3", version_id: answer.version_id, rollout: "immediate", rollout_id: null });
    assert.equal(typeof answer.version_id, "number");
    assert.deepEqual(app.notifier.delivered, [{ kind: "firmware", clientId: device.client_id, payload: { client_id: device.client_id, firmware_version: "1.2.3" } }]);

    const form = new FormData();
    form.set("file", new Blob([image("1.2.4")]), "app.bin");
    const multipart = await app.run(uploadFirmware, asAdmin("POST", path, { body: form }));
    const second = await multipart.json();
    assert.equal(second.firmware_version, "1.2.4");
    assert.notEqual(second.version_id, answer.version_id);
    assert.equal((await app.services.models.get(model.id)).firmware_version, "1.2.4");
  });

  it("keeps each upload as a version, with its notes and uploader; the same bytes again are the same version, stable again", async () => {
    const app = unitApp();
    const model = await app.model();
    const first = image("1.0.0");
    const one = await (await upload(app, model.id, first, "?notes=first%20build")).json();
    const two = await (await upload(app, model.id, image("2.0.0"))).json();
    // Staged, an older version again is a downgrade: refused unless confirmed.
    await expectError(await upload(app, model.id, first, "?notes=ignored&rollout=staged"), 409, "DOWNGRADE_NOT_CONFIRMED");
    const again = await upload(app, model.id, first, "?notes=ignored&rollout=staged&confirm_downgrade=true");
    assert.equal(again.status, 200);
    const sameVersion = await again.json();
    assert.deepEqual(sameVersion, { ...one, rollout: "staged", rollout_id: sameVersion.rollout_id });
    assert.equal(typeof sameVersion.rollout_id, "number");
    assert.notEqual(two.version_id, one.version_id);
    const { versions } = await (await app.run(listVersions, asAdmin("GET", `/api/device-models/${model.id}/firmware/versions`))).json();
    assert.deepEqual(
      versions.map((v: Version) => [v.id, v.version, v.stable, v.notes, v.uploaded_by]),
      [
        [two.version_id, "2.0.0", false, null, "admin-api-token"],
        [one.version_id, "1.0.0", true, "first build", "admin-api-token"],
      ],
    );
    assert.equal((await app.services.models.get(model.id)).firmware_version, "1.0.0");
  });

  it("refuses another image with a version string the model has: 409 FIRMWARE_VERSION_EXISTS, nothing changed", async () => {
    const app = unitApp();
    const model = await app.model();
    const first = image("1.0.0");
    const stored = await (await upload(app, model.id, first)).json();
    const impostor = image("1.0.0");
    const envelope = await expectError(await upload(app, model.id, impostor), 409, "FIRMWARE_VERSION_EXISTS");
    assert.match(envelope.error, /"1\.0\.0"/);
    assert.deepEqual(envelope.details, { version: "1.0.0", version_id: stored.version_id, sha256: sha256(first), uploaded_sha256: sha256(impostor) });
    const list = await (await app.run(listVersions, asAdmin("GET", `/api/device-models/${model.id}/firmware/versions`))).json();
    assert.deepEqual(list.versions.map((v: Version) => [v.id, v.sha256]), [[stored.version_id, sha256(first)]]);
    const download = await app.run(downloadFirmware, asAdmin("GET", `/api/device-models/${model.id}/firmware`));
    assert.deepEqual(new Uint8Array(await download.arrayBuffer()), first);
  });

  it("refuses notes over 1000 characters and unknown query parameters with 400 VALIDATION_FAILED, storing nothing", async () => {
    const app = unitApp();
    const model = await app.model();
    for (const query of [`?notes=${"x".repeat(1001)}`, "?note=typo"]) {
      await expectError(await upload(app, model.id, image("1.0.0"), query), 400, "VALIDATION_FAILED");
    }
    assert.deepEqual(await app.services.firmware.listVersions(await app.services.models.findRow(model.id)), []);
  });

  it("refuses what is not an image with 400 INVALID_FIRMWARE and keeps the current firmware", async () => {
    const app = unitApp();
    const model = await app.model();
    await app.run(uploadFirmware, asAdmin("POST", `/api/device-models/${model.id}/firmware`, { body: new Blob([image("1.0.0")]) }));
    const response = await app.run(uploadFirmware, asAdmin("POST", `/api/device-models/${model.id}/firmware`, { body: new Blob([new Uint8Array(1000)]) }));
    await expectError(response, 400, "INVALID_FIRMWARE");
    assert.equal((await app.services.models.get(model.id)).firmware_version, "1.0.0");
  });

  it("answers 413 beyond FIRMWARE_MAX_BYTES, 415 for another media type, 404 for an unknown model", async () => {
    const app = unitApp({ env: { FIRMWARE_MAX_BYTES: "2048" } });
    const model = await app.model();
    const post = (id: number, body: Blob, type = "application/octet-stream") =>
      app.run(uploadFirmware, asAdmin("POST", `/api/device-models/${id}/firmware`, { body, headers: { "content-type": type } }));
    await expectError(await post(model.id, new Blob([image("1.0.0")])), 413, "PAYLOAD_TOO_LARGE");
    await expectError(await post(model.id, new Blob(["{}"]), "application/json"), 415, "UNSUPPORTED_MEDIA_TYPE");
    await expectError(await post(999, new Blob([new Uint8Array(10)])), 404, "DEVICE_MODEL_NOT_FOUND");
  });

  it("takes curl's default content type (or none) as the raw image from a bearer caller, never from a session cookie alone", async () => {
    const app = unitApp({ browserLogin: true });
    const model = await app.model();
    const path = `/api/device-models/${model.id}/firmware`;
    const curlStyle = (body: Uint8Array<ArrayBuffer>) => ({ body: new Blob([body]), headers: { "content-type": "application/x-www-form-urlencoded" } });
    const stored = await app.run(uploadFirmware, asAdmin("POST", path, curlStyle(image("2.0.0"))));
    assert.equal(stored.status, 200);
    assert.equal((await stored.json()).firmware_version, "2.0.0");
    assert.equal((await app.services.models.get(model.id)).firmware_version, "2.0.0");
    const untyped = await app.run(uploadFirmware, asAdmin("POST", path, { body: new Blob([image("2.0.1")]) }));
    assert.equal(untyped.status, 200);
    // Still checked as an image.
    await expectError(await app.run(uploadFirmware, asAdmin("POST", path, curlStyle(new Uint8Array(1000)))), 400, "INVALID_FIRMWARE");

    const session = { cookie: `${ACCESS_COOKIE}=${ADMIN_TOKEN}`, origin: BASE_URL };
    const byCookie = (body: Uint8Array<ArrayBuffer>, type?: string) =>
      app.run(uploadFirmware, request("POST", path, { body: new Blob([body]), headers: type ? { ...session, "content-type": type } : session }));
    await expectError(await byCookie(image("2.1.0"), "application/x-www-form-urlencoded"), 415, "UNSUPPORTED_MEDIA_TYPE");
    await expectError(await byCookie(image("2.1.0")), 415, "UNSUPPORTED_MEDIA_TYPE");
    // The same session with a proper type is fine: only the guessed raw body needs the bearer token.
    assert.equal((await byCookie(image("2.1.0"), "application/octet-stream")).status, 200);
    assert.equal((await app.services.models.get(model.id)).firmware_version, "2.1.0");
  });

  it("answers 415 to a bearer caller for types that are clearly something else (JSON, text)", async () => {
    const app = unitApp();
    const model = await app.model();
    for (const type of ["application/json", "text/plain"]) {
      const response = await app.run(uploadFirmware, asAdmin("POST", `/api/device-models/${model.id}/firmware`, { body: new Blob([image("1.0.0")]), headers: { "content-type": type } }));
      await expectError(response, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    assert.equal((await app.services.models.get(model.id)).firmware_version, null);
  });

  it("is for admins only", () => expectAdminOnly(uploadFirmware, "POST", "/api/device-models/1/firmware"));
});

describe("functions/api/device-models/[id]/firmware.get.ts", () => {
  async function withFirmware() {
    const app = unitApp();
    const model = await app.model("thermo");
    const bytes = image("2.0.0");
    await app.run(uploadFirmware, asAdmin("POST", `/api/device-models/${model.id}/firmware`, { body: new Blob([bytes]) }));
    return { app, model, bytes, path: `/api/device-models/${model.id}/firmware` };
  }

  it("sends the image as an attachment with an ETag", async () => {
    const { app, bytes, path } = await withFirmware();
    const response = await app.run(downloadFirmware, asAdmin("GET", path));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-disposition"), 'attachment; filename="firmware-thermo.bin"');
    assert.ok(response.headers.get("etag"));
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), bytes);
  });

  it("answers a range with 206, an unsatisfiable one with 416, a matching If-None-Match with 304", async () => {
    const { app, bytes, path } = await withFirmware();
    const partial = await app.run(downloadFirmware, asAdmin("GET", path, { headers: { range: "bytes=0-9" } }));
    assert.equal(partial.status, 206);
    assert.deepEqual(new Uint8Array(await partial.arrayBuffer()), bytes.slice(0, 10));
    await expectError(await app.run(downloadFirmware, asAdmin("GET", path, { headers: { range: `bytes=${bytes.length + 10}-` } })), 416, "RANGE_NOT_SATISFIABLE");
    const etag = (await app.run(downloadFirmware, asAdmin("GET", path))).headers.get("etag")!;
    assert.equal((await app.run(downloadFirmware, asAdmin("GET", path, { headers: { "if-none-match": etag } }))).status, 304);
  });

  it("answers 404 FIRMWARE_NOT_FOUND for a model without firmware, DEVICE_MODEL_NOT_FOUND for an unknown one", async () => {
    const app = unitApp();
    const model = await app.model();
    await expectError(await app.run(downloadFirmware, asAdmin("GET", `/api/device-models/${model.id}/firmware`)), 404, "FIRMWARE_NOT_FOUND");
    await expectError(await app.run(downloadFirmware, asAdmin("GET", "/api/device-models/999/firmware")), 404, "DEVICE_MODEL_NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(downloadFirmware, "GET", "/api/device-models/1/firmware"));
});

/** A model with two versions: `older` (1.0.0, with notes) and `stable` (2.0.0), and a second model with one of its own. */
async function withVersions() {
  const app = unitApp();
  const model = await app.model("thermo");
  const other = await app.model("other");
  const olderBytes = image("1.0.0", { secureVersion: 2, elfSha256: "ab".repeat(32) });
  const stableBytes = image("2.0.0");
  const older = (await (await upload(app, model.id, olderBytes, "?notes=first")).json()).version_id as number;
  const stable = (await (await upload(app, model.id, stableBytes)).json()).version_id as number;
  const foreign = (await (await upload(app, other.id, image("9.0.0"))).json()).version_id as number;
  const base = `/api/device-models/${model.id}/firmware/versions`;
  return { app, model, other, olderBytes, stableBytes, older, stable, foreign, base };
}

/** 404s every version route shares: unknown model, unknown version, another model's version, ids that are not ids. */
async function expectVersionNotFound(route: Parameters<UnitApp["run"]>[0], method: string, suffix = "") {
  const { app, model, foreign, base } = await withVersions();
  await expectError(await app.run(route, asAdmin(method, `/api/device-models/999/firmware/versions/${foreign}${suffix}`)), 404, "DEVICE_MODEL_NOT_FOUND");
  await expectError(await app.run(route, asAdmin(method, `${base}/999${suffix}`)), 404, "FIRMWARE_VERSION_NOT_FOUND");
  await expectError(await app.run(route, asAdmin(method, `${base}/${foreign}${suffix}`)), 404, "FIRMWARE_VERSION_NOT_FOUND");
  for (const vid of ["abc", "0", "-1", "1.5"]) await expectError(await app.run(route, asAdmin(method, `${base}/${vid}${suffix}`)), 404, "NOT_FOUND");
  await expectError(await app.run(route, asAdmin(method, `/api/device-models/abc/firmware/versions/${foreign}${suffix}`)), 404, "NOT_FOUND");
  return { app, model };
}

describe("functions/api/device-models/[id]/firmware/versions/index.get.ts", () => {
  it("lists no versions for a model without uploads", async () => {
    const app = unitApp();
    const model = await app.model();
    const response = await app.run(listVersions, asAdmin("GET", `/api/device-models/${model.id}/firmware/versions`));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { versions: [], count: 0 });
  });

  it("lists the model's versions newest first, with what their images say; the newest is stable", async () => {
    const { app, olderBytes, stableBytes, older, stable, base } = await withVersions();
    const response = await app.run(listVersions, asAdmin("GET", base));
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.count, 2);
    const [newest, oldest] = body.versions;
    assert.deepEqual(
      { ...oldest, uploaded_at: typeof oldest.uploaded_at },
      {
        id: older,
        version: "1.0.0",
        sha256: sha256(olderBytes),
        size: olderBytes.length,
        elf_sha256: "ab".repeat(32),
        secure_version: 2,
        project_name: "bench",
        chip: "ESP32-S2",
        idf_version: oldest.idf_version,
        uploaded_at: "string",
        uploaded_by: "admin-api-token",
        notes: "first",
        stable: false,
      },
    );
    assert.deepEqual([newest.id, newest.version, newest.sha256, newest.stable, newest.notes], [stable, "2.0.0", sha256(stableBytes), true, null]);
    assert.ok(!Number.isNaN(Date.parse(newest.uploaded_at)));
  });

  it("answers 404 DEVICE_MODEL_NOT_FOUND for an unknown model, 404 for an id that is not one", async () => {
    const app = unitApp();
    await expectError(await app.run(listVersions, asAdmin("GET", "/api/device-models/999/firmware/versions")), 404, "DEVICE_MODEL_NOT_FOUND");
    await expectError(await app.run(listVersions, asAdmin("GET", "/api/device-models/abc/firmware/versions")), 404, "NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(listVersions, "GET", "/api/device-models/1/firmware/versions"));
});

describe("functions/api/device-models/[id]/firmware/versions/[vid]/index.get.ts", () => {
  it("reads one version, as the list shows it", async () => {
    const { app, older, stable, base } = await withVersions();
    const { versions } = await (await app.run(listVersions, asAdmin("GET", base))).json();
    for (const [index, vid] of [stable, older].entries()) {
      const response = await app.run(getVersion, asAdmin("GET", `${base}/${vid}`));
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), versions[index]);
    }
  });

  it("answers 404 FIRMWARE_VERSION_NOT_FOUND for an unknown version or one of another model, DEVICE_MODEL_NOT_FOUND, 404 for bad ids", async () => {
    await expectVersionNotFound(getVersion, "GET");
  });

  it("is for admins only", () => expectAdminOnly(getVersion, "GET", "/api/device-models/1/firmware/versions/1"));
});

describe("functions/api/device-models/[id]/firmware/versions/[vid]/image.get.ts", () => {
  it("sends a version's image, the stable one or an older one, as an attachment named after the version", async () => {
    const { app, olderBytes, stableBytes, older, stable, base } = await withVersions();
    for (const [vid, bytes, version] of [[older, olderBytes, "1.0.0"], [stable, stableBytes, "2.0.0"]] as const) {
      const response = await app.run(versionImage, asAdmin("GET", `${base}/${vid}/image`));
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-disposition"), `attachment; filename="firmware-thermo-${version}.bin"`);
      assert.equal(response.headers.get("etag"), `"${sha256(bytes)}"`);
      assert.equal(response.headers.get("cache-control"), "no-cache");
      assert.equal(response.headers.get("content-length"), String(bytes.length));
      assert.deepEqual(new Uint8Array(await response.arrayBuffer()), bytes);
    }
  });

  it("keeps the file name to safe characters whatever the version string holds", async () => {
    const app = unitApp();
    const model = await app.model("thermo");
    const vid = (await (await upload(app, model.id, image('v1 "beta"/2+rc.1'))).json()).version_id;
    const response = await app.run(versionImage, asAdmin("GET", `/api/device-models/${model.id}/firmware/versions/${vid}/image`));
    assert.equal(response.headers.get("content-disposition"), 'attachment; filename="firmware-thermo-v1__beta__2+rc.1.bin"');
  });

  it("answers a range with 206, an unsatisfiable one with 416, a matching If-None-Match with 304, HEAD without a body", async () => {
    const { app, olderBytes, older, base } = await withVersions();
    const path = `${base}/${older}/image`;
    const partial = await app.run(versionImage, asAdmin("GET", path, { headers: { range: "bytes=10-19" } }));
    assert.equal(partial.status, 206);
    assert.equal(partial.headers.get("content-range"), `bytes 10-19/${olderBytes.length}`);
    assert.deepEqual(new Uint8Array(await partial.arrayBuffer()), olderBytes.slice(10, 20));
    await expectError(await app.run(versionImage, asAdmin("GET", path, { headers: { range: `bytes=${olderBytes.length + 10}-` } })), 416, "RANGE_NOT_SATISFIABLE");
    const unchanged = await app.run(versionImage, asAdmin("GET", path, { headers: { "if-none-match": `"${sha256(olderBytes)}"` } }));
    assert.equal(unchanged.status, 304);
    const head = await app.run(versionImage, asAdmin("HEAD", path));
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(olderBytes.length));
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });

  it("answers 404 FIRMWARE_VERSION_NOT_FOUND for an unknown version or one of another model, DEVICE_MODEL_NOT_FOUND, 404 for bad ids", async () => {
    await expectVersionNotFound(versionImage, "GET", "/image");
  });

  it("is for admins only", () => expectAdminOnly(versionImage, "GET", "/api/device-models/1/firmware/versions/1/image"));
});

describe("functions/api/device-models/[id]/firmware/versions/[vid]/index.delete.ts", () => {
  it("deletes an older version: 204, then it and its image are gone; the stable firmware is served as before", async () => {
    const { app, model, stableBytes, older, stable, base } = await withVersions();
    const response = await app.run(deleteVersion, asAdmin("DELETE", `${base}/${older}`));
    assert.equal(response.status, 204);
    assert.equal(await response.text(), "");
    await expectError(await app.run(getVersion, asAdmin("GET", `${base}/${older}`)), 404, "FIRMWARE_VERSION_NOT_FOUND");
    await expectError(await app.run(versionImage, asAdmin("GET", `${base}/${older}/image`)), 404, "FIRMWARE_VERSION_NOT_FOUND");
    await expectError(await app.run(deleteVersion, asAdmin("DELETE", `${base}/${older}`)), 404, "FIRMWARE_VERSION_NOT_FOUND");
    const { versions } = await (await app.run(listVersions, asAdmin("GET", base))).json();
    assert.deepEqual(versions.map((v: Version) => [v.id, v.stable]), [[stable, true]]);
    const download = await app.run(downloadFirmware, asAdmin("GET", `/api/device-models/${model.id}/firmware`));
    assert.deepEqual(new Uint8Array(await download.arrayBuffer()), stableBytes);
  });

  it("refuses the stable version with 409 FIRMWARE_VERSION_IN_USE and changes nothing", async () => {
    const { app, stableBytes, stable, base } = await withVersions();
    const before = await (await app.run(listVersions, asAdmin("GET", base))).json();
    const envelope = await expectError(await app.run(deleteVersion, asAdmin("DELETE", `${base}/${stable}`)), 409, "FIRMWARE_VERSION_IN_USE");
    assert.match(envelope.error, /"2\.0\.0".*stable/);
    assert.deepEqual(await (await app.run(listVersions, asAdmin("GET", base))).json(), before);
    const image = await app.run(versionImage, asAdmin("GET", `${base}/${stable}/image`));
    assert.deepEqual(new Uint8Array(await image.arrayBuffer()), stableBytes);
  });

  it("answers 404 FIRMWARE_VERSION_NOT_FOUND for an unknown version or one of another model (which stays), DEVICE_MODEL_NOT_FOUND, 404 for bad ids", async () => {
    const { app } = await expectVersionNotFound(deleteVersion, "DELETE");
    const [other] = ((await app.services.models.page({ limit: 1000 })).items).filter((m) => m.code === "other");
    assert.equal((await app.services.firmware.listVersions(await app.services.models.findRow(other!.id))).length, 1);
  });

  it("is for admins only", () => expectAdminOnly(deleteVersion, "DELETE", "/api/device-models/1/firmware/versions/1"));
});

describe("functions/api/device-models/[id]/fleet.get.ts", () => {
  it("counts devices per running and target version, stale and mismatched ones", async () => {
    const app = unitApp();
    const model = await app.model("fleet");
    const [a, b] = [await app.device({}, model.id), await app.device({}, model.id), await app.device({}, model.id)];
    assert.equal((await upload(app, model.id, image("2.0.0"), "?rollout=immediate")).status, 200);
    Object.assign(app.world.devices.get(a!.device.id)!, { reportedFirmwareVersion: "2.0.0", lastSeenAt: new Date() });
    Object.assign(app.world.devices.get(b!.device.id)!, { reportedFirmwareVersion: "1.0.0", lastSeenAt: new Date(Date.now() - 3 * 3_600_000) });
    const response = await app.run(getFleet, asAdmin("GET", `/api/device-models/${model.id}/fleet`));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      versions: [
        { version: "2.0.0", running: 1, target: 3, crashes: 0 },
        { version: "1.0.0", running: 1, target: 0, crashes: 0 },
        { version: null, running: 1, target: 0, crashes: 0 },
      ],
      stale: 1,
      mismatched: 1,
    });
    const recent = await (await app.run(getFleet, asAdmin("GET", `/api/device-models/${model.id}/fleet?stale_hours=2`))).json();
    assert.equal(recent.stale, 2);
  });

  it("404 for an unknown model, 400 for a bad stale_hours", async () => {
    const app = unitApp();
    await expectError(await app.run(getFleet, asAdmin("GET", "/api/device-models/99/fleet")), 404, "DEVICE_MODEL_NOT_FOUND");
    const model = await app.model("fleet");
    await expectError(await app.run(getFleet, asAdmin("GET", `/api/device-models/${model.id}/fleet?stale_hours=0`)), 400, "VALIDATION_FAILED");
  });

  it("is for admins only", () => expectAdminOnly(getFleet, "GET", "/api/device-models/1/fleet"));
});

describe("functions/api/device-models/[id]/crashes.get.ts", () => {
  it("is for admins only", () => expectAdminOnly(crashes, "GET", "/api/device-models/1/crashes"));

  it("counts the stored dumps per firmware version; 404 for an unknown model, 400 for a bad day count", async () => {
    const app = unitApp();
    const { device } = await app.device();
    for (const version of ["v1", "v1", "v2"]) {
      await app.services.coreDumps.save({ deviceId: device.id, deviceModelId: device.device_model_id, chip: null, firmwareVersion: version, content: Buffer.from("x") });
    }
    const response = await app.run(crashes, asAdmin("GET", `/api/device-models/${device.device_model_id}/crashes?days=1`));
    const body = (await response.json()) as { versions: unknown[] };
    assert.deepEqual(body.versions, [
      { firmware_version: "v1", crashes: 2 },
      { firmware_version: "v2", crashes: 1 },
    ]);
    await expectError(await app.run(crashes, asAdmin("GET", "/api/device-models/9999/crashes")), 404, "DEVICE_MODEL_NOT_FOUND");
    await expectError(await app.run(crashes, asAdmin("GET", `/api/device-models/${device.device_model_id}/crashes?days=0`)), 400, "VALIDATION_FAILED");
  });
});
