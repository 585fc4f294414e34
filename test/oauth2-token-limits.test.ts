/**
 * Failure limits of the built-in token endpoint: per client_id and per address, only failures count, 429 with
 * Retry-After in the OAuth2 shape; devices sharing one NAT address are not locked out by one broken device.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createLogger } from "../lib/logger.ts";
import { createTestApp, type TestApp } from "./support/app.ts";
import { startTestServer } from "./support/server.ts";

type Device = { client_id: string; secret: string };

const tokenRequest = (clientId: string, secret: string) =>
  new Request("http://iot.test/oauth2/token", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: secret }),
  });

/** The OAuth2 error shape inside the envelope (like invalid_client), with Retry-After. */
async function assertLimited(response: Response, retryAfter: number, label: string) {
  assert.equal(response.status, 429, label);
  assert.equal(response.headers.get("retry-after"), String(retryAfter), label);
  assert.equal(response.headers.get("cache-control"), "no-store", label);
  const body = await response.json();
  assert.deepEqual(
    { ...body, correlationId: body.correlationId === response.headers.get("x-request-id") },
    {
      error: "temporarily_unavailable",
      error_description: `Too many failed attempts to authenticate; try again in ${retryAfter} seconds.`,
      code: "TOO_MANY_FAILED_ATTEMPTS",
      details: { retry_after_seconds: retryAfter },
      correlationId: true,
    },
    label,
  );
}

describe("/oauth2/token failure limits", () => {
  let app: TestApp;
  let devices: Device[];
  const lockouts: Record<string, unknown>[] = [];
  // 3 failures per client_id, 6 per address, in 600 s: one failure drains every 200 s (client) or 100 s (address).
  const env = { OAUTH2_CLIENT_FAILURE_LIMIT: "3", OAUTH2_ADDRESS_FAILURE_LIMIT: "6", OAUTH2_FAILURE_WINDOW_SECONDS: "600" };

  const token = (device: Device, from: string, secret = device.secret) => app.fetch(tokenRequest(device.client_id, secret), { remoteAddress: from });

  before(async () => {
    const logger = createLogger("warn", {}, (line) => {
      const entry = JSON.parse(line);
      if (/refused for a while/.test(entry.message)) lockouts.push(entry);
    });
    app = await createTestApp({ env, overrides: { logger } });
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "limits", name: "Limits" } })).json();
    devices = [];
    for (let i = 0; i < 4; i++) {
      const device = await (await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } })).json();
      devices.push({ client_id: device.client_id, secret: await app.services.identity.getSecret(device.client_id) });
    }
  });
  after(() => app.close());

  test("successful token requests never count: many devices behind one address keep getting tokens", async () => {
    for (let round = 0; round < 10; round++) {
      for (const device of devices) assert.equal((await token(device, "203.0.113.1")).status, 200, `round ${round}`);
    }
  });

  test("a client_id that failed 3 times is refused for wrong secrets from anywhere, never for its right secret", async () => {
    const [device] = devices;
    for (let i = 0; i < 3; i++) assert.equal((await token(device!, "203.0.113.2", "wrong")).status, 401);
    assert.deepEqual(
      lockouts.map(({ level, client_id, address }) => ({ level, client_id, address })),
      [{ level: "warn", client_id: device!.client_id, address: undefined }],
      "the third failure is logged once, naming the client",
    );
    await assertLimited(await token(device!, "203.0.113.2", "wrong"), 200, "a wrong secret");
    await assertLimited(await token(device!, "198.51.100.2", "wrong"), 200, "a wrong secret from another address");
    assert.equal((await token(device!, "203.0.113.2")).status, 200, "whoever knows only the client_id cannot keep the device from its tokens");
    assert.equal((await token(device!, "198.51.100.2")).status, 200, "the right secret from another address");
    assert.equal((await token(devices[1]!, "203.0.113.2")).status, 200, "other clients from that address still work");
  });

  test("an unknown client_id is limited exactly like a known one", async () => {
    const ghost: Device = { client_id: "iotdevice-limits-zzzzzzzz", secret: "wrong" };
    for (let i = 0; i < 3; i++) assert.equal((await token(ghost, "203.0.113.3")).status, 401);
    await assertLimited(await token(ghost, "203.0.113.3"), 200, "unknown client");
  });

  test("an address that failed 6 times is refused for every client; other addresses are not", async () => {
    for (let i = 0; i < 6; i++) {
      const response = await app.fetch(tokenRequest(`iotdevice-limits-spray${i}`, "guess"), { remoteAddress: "192.0.2.66" });
      assert.equal(response.status, 401, `guess ${i}`);
    }
    assert.equal(lockouts.at(-1)?.address, "192.0.2.66", "the address that ran out is logged");
    await assertLimited(await token(devices[2]!, "192.0.2.66"), 100, "a real device from the spraying address");
    await assertLimited(await token(devices[2]!, "::ffff:192.0.2.66"), 100, "the same address written as IPv4-mapped IPv6");
    assert.equal((await token(devices[2]!, "192.0.2.67")).status, 200);
  });

  test("one device stuck on a stale secret does not lock out the others behind its NAT", async () => {
    const [, , stuck, healthy] = devices;
    for (let attempt = 0; attempt < 30; attempt++) await token(stuck!, "203.0.113.4", "stale-secret");
    await assertLimited(await token(stuck!, "203.0.113.4", "stale-secret"), 200, "the stuck device");
    assert.equal((await token(healthy!, "203.0.113.4")).status, 200, "its refused attempts spend nothing of the address's budget");
  });

  test("IPv6 clients are counted per /64", async () => {
    for (let i = 0; i < 6; i++) {
      const response = await app.fetch(tokenRequest(`iotdevice-limits-six${i}`, "guess"), { remoteAddress: `2001:db8:5:6::${i + 1}` });
      assert.equal(response.status, 401);
    }
    await assertLimited(await token(devices[3]!, "2001:db8:5:6:ffff::1"), 100, "another address of that /64");
    assert.equal((await token(devices[3]!, "2001:db8:5:7::1")).status, 200, "the next /64");
  });
});

describe("/oauth2/token limits on a listening server", () => {
  test("the connection's address is counted; X-Forwarded-For only with TRUST_PROXY_HOPS", async () => {
    for (const [hops, limitedBySpoofing] of [["0", true], ["1", false]] as const) {
      const server = await startTestServer({ env: { OAUTH2_CLIENT_FAILURE_LIMIT: "0", OAUTH2_ADDRESS_FAILURE_LIMIT: "2", TRUST_PROXY_HOPS: hops, MQTT_URL: "" } });
      try {
        const attempt = (forwardedFor: string) =>
          fetch(`${server.url}/oauth2/token`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded", "x-forwarded-for": forwardedFor },
            body: new URLSearchParams({ grant_type: "client_credentials", client_id: "iotdevice-x-nobody00", client_secret: "guess" }),
          });
        // A different X-Forwarded-For each time: only a trusted proxy's entry may tell clients apart.
        assert.equal((await attempt("198.51.100.1")).status, 401);
        assert.equal((await attempt("198.51.100.2")).status, 401);
        assert.equal((await attempt("198.51.100.3")).status, limitedBySpoofing ? 429 : 401, `TRUST_PROXY_HOPS=${hops}`);
      } finally {
        await server.close();
      }
    }
  });
});
