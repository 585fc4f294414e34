/** Unit tests of functions/api/devices/** (one describe per route file). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import deleteDevice from "../../../../functions/api/devices/[id]/index.delete.ts";
import getDevice from "../../../../functions/api/devices/[id]/index.get.ts";
import putDevice from "../../../../functions/api/devices/[id]/index.put.ts";
import clientStatus from "../../../../functions/api/devices/[id]/keycloak-status.get.ts";
import syncClient from "../../../../functions/api/devices/[id]/keycloak-sync.post.ts";
import provisioning from "../../../../functions/api/devices/[id]/provisioning.get.ts";
import rotateDevice from "../../../../functions/api/devices/[id]/rotate.post.ts";
import deviceLogs from "../../../../functions/api/devices/[id]/logs.get.ts";
import listCoreDumps from "../../../../functions/api/devices/[id]/coredumps/index.get.ts";
import downloadCoreDump from "../../../../functions/api/devices/[id]/coredumps/[cid].get.ts";
import deleteCoreDump from "../../../../functions/api/devices/[id]/coredumps/[cid].delete.ts";
import listDevices from "../../../../functions/api/devices/index.get.ts";
import createDevice from "../../../../functions/api/devices/index.post.ts";
import { runRoute } from "../../../../lib/http/app.ts";
import { asAdmin, expectAdminOnly, expectError, unitApp } from "../../harness.ts";

const SCHEMA = JSON.stringify({ type: "object", properties: { deviceName: { type: "string" } }, required: ["deviceName"] });

describe("functions/api/devices/index.get.ts", () => {
  it("lists devices sorted by key, filtered by model and rotation state", async () => {
    const app = unitApp();
    const model = await app.model("a");
    const first = await app.device({}, model.id);
    const second = await app.device({}, model.id);
    await app.device();
    const run = (path: string) => runRoute(listDevices, asAdmin("GET", path), { ...app.edge, devices: app.services.devices });
    const all = await (await run("/api/devices")).json();
    assert.equal(all.count, 3);
    assert.deepEqual(all.devices.map((d: { key: string }) => d.key), [...all.devices.map((d: { key: string }) => d.key)].sort());
    const ofModel = await (await run(`/api/devices?model_id=${model.id}`)).json();
    assert.deepEqual(ofModel.devices.map((d: { id: number }) => d.id).sort(), [first.device.id, second.device.id].sort());
    const queued = await (await run("/api/devices?rotation_state=QUEUED")).json();
    assert.equal(queued.count, 0);
  });

  it("pages by key with limit and cursor, filtered by q; next_cursor null on the last page", async () => {
    const app = unitApp();
    const model = await app.model("a");
    for (let i = 0; i < 5; i++) await app.device({ deviceName: `Room ${i}` }, model.id);
    const run = async (path: string) => (await runRoute(listDevices, asAdmin("GET", path), { ...app.edge, devices: app.services.devices })).json();
    const keys: string[] = [];
    let page = await run("/api/devices?limit=2");
    keys.push(...page.devices.map((d: { key: string }) => d.key));
    while (page.next_cursor !== null) {
      assert.equal(page.count, 2);
      page = await run(`/api/devices?limit=2&cursor=${page.next_cursor}`);
      keys.push(...page.devices.map((d: { key: string }) => d.key));
    }
    assert.equal(keys.length, 5);
    assert.deepEqual(keys, [...keys].sort());
    const found = await run("/api/devices?q=room%203&limit=10");
    assert.deepEqual([found.count, found.devices[0].device_name, found.next_cursor], [1, "Room 3", null]);
  });

  it("refuses a bad limit or cursor with 400 VALIDATION_FAILED", async () => {
    const app = unitApp();
    for (const query of ["limit=0", "limit=5000", "cursor=xyz", "q="]) {
      await expectError(await app.run(listDevices, asAdmin("GET", `/api/devices?${query}`)), 400, "VALIDATION_FAILED");
    }
  });

  it("refuses an unknown filter or state with 400 VALIDATION_FAILED", async () => {
    const app = unitApp();
    await expectError(await app.run(listDevices, asAdmin("GET", "/api/devices?rotation_state=LOST")), 400, "VALIDATION_FAILED");
    await expectError(await app.run(listDevices, asAdmin("GET", "/api/devices?colour=red")), 400, "VALIDATION_FAILED");
  });

  it("is for admins only", () => expectAdminOnly(listDevices, "GET", "/api/devices"));
});

describe("functions/api/devices/index.post.ts", () => {
  it("creates a device and its OAuth2 client: 201 with the device", async () => {
    const app = unitApp();
    const model = await app.model("thermo", SCHEMA);
    const config = JSON.stringify({ deviceName: "Hall" });
    const response = await app.run(createDevice, asAdmin("POST", "/api/devices", { body: { device_model_id: model.id, config } }));
    assert.equal(response.status, 201);
    const device = await response.json();
    assert.deepEqual([device.device_name, device.config, device.device_model.code, device.rotation_state], ["Hall", config, "thermo", "OK"]);
    assert.match(device.client_id, new RegExp(`^iotdevice-thermo-${device.key}$`));
    assert.equal((await app.identity.status(device.client_id)).exists, true);
  });

  it("refuses an unknown model, a config that is not JSON or not the schema's, with 400 VALIDATION_FAILED", async () => {
    const app = unitApp();
    const model = await app.model("thermo", SCHEMA);
    for (const body of [
      { device_model_id: 999, config: "{}" },
      { device_model_id: model.id, config: "{nope" },
      { device_model_id: model.id, config: "{}" },
      { device_model_id: model.id },
      { device_model_id: "1", config: "{}" },
    ]) {
      await expectError(await app.run(createDevice, asAdmin("POST", "/api/devices", { body })), 400, "VALIDATION_FAILED");
    }
    assert.deepEqual((await app.services.devices.page({ limit: 1000 })).items, []);
  });

  it("names the first field that breaks the schema, and why, in the error sentence", async () => {
    const app = unitApp();
    const model = await app.model("thermo", SCHEMA);
    const response = await app.run(createDevice, asAdmin("POST", "/api/devices", { body: { device_model_id: model.id, config: '{"deviceName": 5}' } }));
    const body = await expectError(response, 400, "VALIDATION_FAILED");
    assert.match(String(body.error), /^Config validation failed: \/deviceName must be string/);
  });

  it("is for admins only", () => expectAdminOnly(createDevice, "POST", "/api/devices", { body: { device_model_id: 1, config: "{}" } }));
});

describe("functions/api/devices/[id]/index.get.ts", () => {
  it("reads a device with its model", async () => {
    const app = unitApp();
    const { device } = await app.device({ deviceName: "Hall" });
    const response = await app.run(getDevice, asAdmin("GET", `/api/devices/${device.id}`));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), device);
  });

  it("answers 404 DEVICE_NOT_FOUND for an unknown id", async () => {
    const app = unitApp();
    await expectError(await app.run(getDevice, asAdmin("GET", "/api/devices/999")), 404, "DEVICE_NOT_FOUND");
    await expectError(await app.run(getDevice, asAdmin("GET", "/api/devices/-1")), 404, "NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(getDevice, "GET", "/api/devices/1"));
});

describe("functions/api/devices/[id]/index.put.ts", () => {
  it("replaces the config and sends the device a config notice", async () => {
    const app = unitApp();
    const { device } = await app.device({ deviceName: "Hall" });
    const config = JSON.stringify({ deviceName: "Attic" });
    const response = await app.run(putDevice, asAdmin("PUT", `/api/devices/${device.id}`, { body: { config } }));
    assert.equal(response.status, 200);
    assert.deepEqual([(await response.json()).device_name], ["Attic"]);
    assert.deepEqual(app.notifier.delivered, [{ kind: "config", clientId: device.client_id, payload: { client_id: device.client_id, device_key: device.key } }]);
  });

  it("still answers 200 when the broker is down (the notice is lost, the change is not)", async () => {
    const app = unitApp();
    const { device } = await app.device();
    app.notifier.broker.up = false;
    const response = await app.run(putDevice, asAdmin("PUT", `/api/devices/${device.id}`, { body: { config: '{"deviceName":"Cellar"}' } }));
    assert.equal(response.status, 200);
    assert.equal((await app.services.devices.get(device.id)).device_name, "Cellar");
  });

  it("answers 404 for an unknown device and 400 for bad input, changing nothing", async () => {
    const app = unitApp();
    const { device } = await app.device({ deviceName: "Hall" });
    await expectError(await app.run(putDevice, asAdmin("PUT", "/api/devices/999", { body: { config: "{}" } })), 404, "DEVICE_NOT_FOUND");
    await expectError(await app.run(putDevice, asAdmin("PUT", `/api/devices/${device.id}`, { body: { config: "[" } })), 400, "VALIDATION_FAILED");
    await expectError(await app.run(putDevice, asAdmin("PUT", `/api/devices/${device.id}`, { body: { config: "{}", key: "x" } })), 400, "VALIDATION_FAILED");
    assert.equal((await app.services.devices.get(device.id)).device_name, "Hall");
    assert.deepEqual(app.notifier.delivered, []);
  });

  it("is for admins only", () => expectAdminOnly(putDevice, "PUT", "/api/devices/1", { body: { config: "{}" } }));
});

describe("functions/api/devices/[id]/index.delete.ts", () => {
  it("deletes the device and its OAuth2 client: 204", async () => {
    const app = unitApp();
    const { device } = await app.device();
    assert.equal((await app.run(deleteDevice, asAdmin("DELETE", `/api/devices/${device.id}`))).status, 204);
    await expectError(await app.run(getDevice, asAdmin("GET", `/api/devices/${device.id}`)), 404, "DEVICE_NOT_FOUND");
    assert.equal((await app.identity.status(device.client_id)).exists, false);
  });

  it("answers 404 for an unknown device", async () => {
    await expectError(await unitApp().run(deleteDevice, asAdmin("DELETE", "/api/devices/999")), 404, "DEVICE_NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(deleteDevice, "DELETE", "/api/devices/1"));
});

describe("functions/api/devices/[id]/keycloak-status.get.ts", () => {
  it("says whether the device's client exists (a missing one is not a 404)", async () => {
    const app = unitApp();
    const { device } = await app.device();
    const path = `/api/devices/${device.id}/keycloak-status`;
    assert.deepEqual(await (await app.run(clientStatus, asAdmin("GET", path))).json(), {
      exists: true,
      client_id: device.client_id,
      keycloak_uuid: device.client_id,
      console_url: null,
    });
    await app.identity.deleteClient(device.client_id);
    const missing = await app.run(clientStatus, asAdmin("GET", path));
    assert.equal(missing.status, 200);
    assert.equal((await missing.json()).exists, false);
  });

  it("answers 404 for an unknown device", async () => {
    await expectError(await unitApp().run(clientStatus, asAdmin("GET", "/api/devices/999/keycloak-status")), 404, "DEVICE_NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(clientStatus, "GET", "/api/devices/1/keycloak-status"));
});

describe("functions/api/devices/[id]/keycloak-sync.post.ts", () => {
  it("leaves an existing client and its secret alone", async () => {
    const app = unitApp();
    const { device } = await app.device();
    const secret = await app.identity.getSecret(device.client_id);
    const response = await app.run(syncClient, asAdmin("POST", `/api/devices/${device.id}/keycloak-sync`));
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.deepEqual([body.exists, body.created, body.stale_secret], [true, false, false]);
    assert.equal(await app.identity.getSecret(device.client_id), secret);
    assert.deepEqual(app.audit.events, [], "nothing changed, nothing to audit");
  });

  it("recreates a missing client with a new secret: stale_secret, and the operator is told", async () => {
    const app = unitApp();
    const { device } = await app.device();
    await app.identity.deleteClient(device.client_id);
    const body = await (await app.run(syncClient, asAdmin("POST", `/api/devices/${device.id}/keycloak-sync`))).json();
    assert.deepEqual([body.exists, body.created, body.stale_secret], [true, true, true]);
    assert.ok(app.logger.lines.some((line) => line.level === "warn" && line.fields.client_id === device.client_id));
    assert.deepEqual(
      app.audit.events.map(({ actor, kind, deviceId, details }) => ({ actor, kind, deviceId, details })),
      [{ actor: "admin-api-token", kind: "device.client_recreated", deviceId: device.id, details: { key: device.key, client_id: device.client_id } }],
    );
  });

  it("answers 404 for an unknown device, 503 while the database is unreachable", async () => {
    const app = unitApp();
    await expectError(await app.run(syncClient, asAdmin("POST", "/api/devices/999/keycloak-sync")), 404, "DEVICE_NOT_FOUND");
    const { device } = await app.device();
    await app.identity.deleteClient(device.client_id);
    app.database.server.up = false;
    await expectError(await app.run(syncClient, asAdmin("POST", `/api/devices/${device.id}/keycloak-sync`)), 503, "UPSTREAM_UNAVAILABLE");
  });

  it("is for admins only", () => expectAdminOnly(syncClient, "POST", "/api/devices/1/keycloak-sync"));
});

describe("functions/api/devices/[id]/provisioning.get.ts", () => {
  it("sends the package as a JSON file with the current secret, and reading changes no secret", async () => {
    const app = unitApp();
    const { device } = await app.device();
    const secret = await app.identity.getSecret(device.client_id);
    const response = await app.run(provisioning, asAdmin("GET", `/api/devices/${device.id}/provisioning`));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-disposition"), `attachment; filename="provisioning-${device.key}.json"`);
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.deepEqual(await response.json(), {
      device_key: device.key,
      client_id: device.client_id,
      client_secret: secret,
      token_url: "http://iot.test/oauth2/token",
      base_url: "http://iot.test",
      mqtt_url: "mqtt://broker.test:1883",
      wifi_ssid: "fleet-wifi",
      wifi_password: "fleet-wifi-password",
    });
    assert.equal(await app.identity.getSecret(device.client_id), secret);
  });

  it("sends the NVS image as base64 JSON with partition_size, raw with format=nvs", async () => {
    const app = unitApp();
    const { device } = await app.device();
    const base64 = await (await app.run(provisioning, asAdmin("GET", `/api/devices/${device.id}/provisioning?partition_size=0x4000`))).json();
    assert.equal(base64.size, 0x4000);
    const raw = await app.run(provisioning, asAdmin("GET", `/api/devices/${device.id}/provisioning?format=nvs&partition_size=16384`));
    assert.equal(raw.headers.get("content-type"), "application/octet-stream");
    assert.deepEqual(Buffer.from(await raw.arrayBuffer()), Buffer.from(base64.data, "base64"));
  });

  it("refuses bad query combinations with 400 VALIDATION_FAILED", async () => {
    const app = unitApp();
    const { device } = await app.device();
    for (const query of ["format=nvs", "format=json&partition_size=16384", "partition_size=big", "partition_size=100", "format=xml", "other=1"]) {
      await expectError(await app.run(provisioning, asAdmin("GET", `/api/devices/${device.id}/provisioning?${query}`)), 400, "VALIDATION_FAILED");
    }
  });

  it("answers 400 PROVISIONING_NOT_CONFIGURED without the Wi-Fi settings", async () => {
    const app = unitApp({ env: { WIFI_SSID: "", WIFI_PASSWORD: "" } });
    const { device } = await app.device();
    await expectError(await app.run(provisioning, asAdmin("GET", `/api/devices/${device.id}/provisioning`)), 400, "PROVISIONING_NOT_CONFIGURED");
  });

  it("answers 409 CLIENT_MISSING when the device's client is gone, 404 for an unknown device", async () => {
    const app = unitApp();
    const { device } = await app.device();
    await app.identity.deleteClient(device.client_id);
    await expectError(await app.run(provisioning, asAdmin("GET", `/api/devices/${device.id}/provisioning`)), 409, "CLIENT_MISSING");
    await expectError(await app.run(provisioning, asAdmin("GET", "/api/devices/999/provisioning")), 404, "DEVICE_NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(provisioning, "GET", "/api/devices/1/provisioning"));
});

describe("functions/api/devices/[id]/rotate.post.ts", () => {
  it("starts the device's rotation at once when nothing rotates: a rotation notice; again: already_pending", async () => {
    const app = unitApp();
    const { device } = await app.device();
    const path = `/api/devices/${device.id}/rotate`;
    assert.deepEqual(await (await app.run(rotateDevice, asAdmin("POST", path))).json(), { status: "queued" });
    assert.equal((await app.services.devices.get(device.id)).rotation_state, "PENDING");
    assert.deepEqual(app.notifier.delivered.map((notice) => [notice.kind, notice.clientId]), [["rotation", device.client_id]]);
    assert.deepEqual(await (await app.run(rotateDevice, asAdmin("POST", path))).json(), { status: "already_pending" });
  });

  it("queues a device while another one rotates", async () => {
    const app = unitApp();
    const { device: first } = await app.device();
    const { device: second } = await app.device();
    await app.run(rotateDevice, asAdmin("POST", `/api/devices/${first.id}/rotate`));
    assert.deepEqual(await (await app.run(rotateDevice, asAdmin("POST", `/api/devices/${second.id}/rotate`))).json(), { status: "queued" });
    assert.equal((await app.services.devices.get(second.id)).rotation_state, "QUEUED");
  });

  it("answers 404 for an unknown device", async () => {
    await expectError(await unitApp().run(rotateDevice, asAdmin("POST", "/api/devices/999/rotate")), 404, "DEVICE_NOT_FOUND");
  });

  it("is for admins only", () => expectAdminOnly(rotateDevice, "POST", "/api/devices/1/rotate"));
});

describe("functions/api/devices/[id]/logs.get.ts", () => {
  it("is for admins only", () => expectAdminOnly(deviceLogs, "GET", "/api/devices/1/logs"));

  it("answers the reference shape; polling from window_end with a small limit gives every line once", async () => {
    const app = unitApp();
    const { device } = await app.device({ deviceName: "Hall", deviceEntityId: "sensor.hall" });
    const payload = Array.from({ length: 25 }, (_, i) => JSON.stringify({ message: `\u001b[0;32mline ${i}\u001b[0m`, entity_id: "sensor.hall" })).join("\n");
    await app.services.deviceLogs.ingestMqtt(payload, null);
    await app.services.deviceLogs.flush();
    const seen: string[] = [];
    let start = new Date(Date.now() - 60_000).toISOString();
    for (let poll = 0; poll < 10; poll++) {
      const response = await runRoute(deviceLogs, asAdmin("GET", `/api/devices/${device.id}/logs?start=${start}&limit=4`), { ...app.edge, devices: app.services.devices, deviceLogs: app.services.deviceLogs });
      assert.equal(response.status, 200);
      const page = (await response.json()) as { logs: { timestamp: string; message: string }[]; has_more: boolean; window_start: string; window_end: string };
      assert.deepEqual(Object.keys(page).sort(), ["has_more", "logs", "window_end", "window_start"]);
      assert.equal(page.window_start, start);
      seen.push(...page.logs.map((line) => line.message));
      start = page.window_end;
    }
    assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => `line ${i}`));
  });

  it("refuses a bad date-time with 400 and an unknown device with 404", async () => {
    const app = unitApp();
    const { device } = await app.device();
    await expectError(await app.run(deviceLogs, asAdmin("GET", `/api/devices/${device.id}/logs?end=2026-13-01`)), 400, "VALIDATION_FAILED");
    await expectError(await app.run(deviceLogs, asAdmin("GET", `/api/devices/${device.id}/logs?limit=0`)), 400, "VALIDATION_FAILED");
    await expectError(await app.run(deviceLogs, asAdmin("GET", "/api/devices/9999/logs")), 404, "DEVICE_NOT_FOUND");
  });
});

async function deviceWithDump() {
  const app = unitApp();
  const { device } = await app.device();
  const dump = await app.services.coreDumps.save({ deviceId: device.id, deviceModelId: device.device_model_id, chip: "esp32", firmwareVersion: "v1", content: Buffer.from("\u007fELF dump") });
  return { app, device, dump };
}

describe("functions/api/devices/[id]/coredumps/index.get.ts", () => {
  it("is for admins only", () => expectAdminOnly(listCoreDumps, "GET", "/api/devices/1/coredumps"));

  it("lists the device's dumps without their bytes; 404 for an unknown device", async () => {
    const { app, device, dump } = await deviceWithDump();
    const response = await app.run(listCoreDumps, asAdmin("GET", `/api/devices/${device.id}/coredumps`));
    assert.deepEqual(await response.json(), { coredumps: [dump], count: 1 });
    await expectError(await app.run(listCoreDumps, asAdmin("GET", "/api/devices/9999/coredumps")), 404, "DEVICE_NOT_FOUND");
  });
});

describe("functions/api/devices/[id]/coredumps/[cid].get.ts", () => {
  it("is for admins only", () => expectAdminOnly(downloadCoreDump, "GET", "/api/devices/1/coredumps/1"));

  it("downloads the bytes as an attachment named after the device; another device's dump is 404", async () => {
    const { app, device, dump } = await deviceWithDump();
    const response = await app.run(downloadCoreDump, asAdmin("GET", `/api/devices/${device.id}/coredumps/${dump.id}`));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-disposition"), `attachment; filename="coredump-${device.key}-${dump.id}.elf"`);
    assert.equal(await response.text(), "\u007fELF dump");
    const { device: other } = await app.device();
    await expectError(await app.run(downloadCoreDump, asAdmin("GET", `/api/devices/${other.id}/coredumps/${dump.id}`)), 404, "CORE_DUMP_NOT_FOUND");
  });
});

describe("functions/api/devices/[id]/coredumps/[cid].delete.ts", () => {
  it("is for admins only", () => expectAdminOnly(deleteCoreDump, "DELETE", "/api/devices/1/coredumps/1"));

  it("deletes one dump; a second delete is 404", async () => {
    const { app, device, dump } = await deviceWithDump();
    assert.equal((await app.run(deleteCoreDump, asAdmin("DELETE", `/api/devices/${device.id}/coredumps/${dump.id}`))).status, 204);
    await expectError(await app.run(deleteCoreDump, asAdmin("DELETE", `/api/devices/${device.id}/coredumps/${dump.id}`)), 404, "CORE_DUMP_NOT_FOUND");
  });
});
