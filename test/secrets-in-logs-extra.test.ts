/**
 * CONTRACT §1/§9 ("Secrets never appear in logs or error bodies") for the paths added with the Keycloak token
 * pass-through (POST /oauth2/token in Keycloak mode) and the embedded MQTT broker's sign-in: the client secret a
 * device sends (right or wrong, in the form or in HTTP Basic), the tokens it gets, and the passwords and tokens it
 * signs in to the broker with never reach a log line, even at LOG_LEVEL=debug.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import mqtt, { type IClientOptions } from "mqtt";
import { createLogger } from "../lib/logger.ts";
import { createFleet } from "./support/fleet.ts";
import { clientCredentialsToken, keycloakTestSettings } from "./support/keycloak.ts";
import { keycloakEnv, startTestServer, type TestServer } from "./support/server.ts";

function assertNoSecretIn(lines: string[], secrets: Record<string, string>) {
  assert.ok(lines.length > 3, "requests were logged");
  for (const [what, value] of Object.entries(secrets)) {
    assert.ok(value.length >= 8, `${what} is a real value`);
    const leaking = lines.find((line) => line.includes(value));
    assert.equal(leaking, undefined, `a log line contains ${what}: ${leaking}`);
  }
}

describe("Keycloak token pass-through: no client secret or token in the logs", () => {
  const lines: string[] = [];
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ env: { ...keycloakEnv(), LOG_LEVEL: "debug" }, overrides: { logger: createLogger("debug", {}, (line) => lines.push(line)) } });
  });
  after(() => server?.close());

  test("right and wrong secrets, in the form and in HTTP Basic, through POST /oauth2/token", async () => {
    const [device] = await createFleet(server, 1);
    const tokenUrl = `${server.url}/oauth2/token`;

    const good = await clientCredentialsToken(tokenUrl, device!.clientId, device!.secret);
    assert.equal(good.ok, true, "the pass-through issues a token for the right secret");

    const wrongSecret = "wrong-pass-through-guess-9f3k";
    const wrong = await clientCredentialsToken(tokenUrl, device!.clientId, wrongSecret);
    assert.equal(wrong.status, 401);
    const wrongBody = await (
      await fetch(tokenUrl, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: "client_credentials", client_id: device!.clientId, client_secret: wrongSecret }),
      })
    ).text();
    assert.ok(!wrongBody.includes(wrongSecret), "the error body does not echo the secret");

    const basicSecret = "basic-auth-wrong-guess-7h2m";
    const basic = Buffer.from(`${device!.clientId}:${basicSecret}`).toString("base64");
    const viaBasic = await fetch(tokenUrl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${basic}` },
      body: new URLSearchParams({ grant_type: "client_credentials" }),
    });
    assert.equal(viaBasic.status, 401);
    assert.ok(!(await viaBasic.text()).includes(basicSecret));

    const goodBasic = Buffer.from(`${device!.clientId}:${device!.secret}`).toString("base64");
    const viaGoodBasic = await fetch(tokenUrl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${goodBasic}` },
      body: new URLSearchParams({ grant_type: "client_credentials" }),
    });
    assert.equal(viaGoodBasic.status, 200);
    const basicToken = (await viaGoodBasic.json()).access_token as string;

    // Used as a device: the token is checked and the request logged.
    const config = await fetch(`${server.url}/iot/config`, { headers: { authorization: `Bearer ${good.accessToken}` } });
    await config.body?.cancel();
    assert.equal(config.status, 200);

    assertNoSecretIn(lines, {
      "the device's client secret": device!.secret,
      "a wrong client secret": wrongSecret,
      "a wrong secret sent in HTTP Basic": basicSecret,
      "an HTTP Basic credential": basic,
      "the right HTTP Basic credential": goodBasic,
      "an access token": good.accessToken!,
      "an access token got with HTTP Basic": basicToken,
      "the backend's Keycloak admin client secret": keycloakTestSettings().adminClientSecret,
    });
  });
});

describe("embedded MQTT broker sign-in: no password or token in the logs", () => {
  const lines: string[] = [];
  let server: TestServer;
  let url: string;
  before(async () => {
    server = await startTestServer({
      env: { MQTT_URL: "", EMBEDDED_MQTT: "true", EMBEDDED_MQTT_HOST: "127.0.0.1", EMBEDDED_MQTT_PORT: "0", LOG_LEVEL: "debug" },
      overrides: { logger: createLogger("debug", {}, (line) => lines.push(line)) },
    });
    const status = server.services.embeddedBroker!.status;
    assert.equal(status.state, "running");
    url = `mqtt://127.0.0.1:${status.state === "running" ? status.port : 0}`;
  });
  after(() => server?.close());

  /** Connects and disconnects; true when the broker accepted the sign-in. */
  async function signIn(options: IClientOptions): Promise<boolean> {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    const accepted = await new Promise<boolean>((resolve) => {
      client.once("connect", () => resolve(true));
      client.once("error", () => resolve(false));
      client.once("close", () => resolve(false));
    });
    await client.endAsync(true);
    return accepted;
  }

  test("accepted and refused sign-ins with tokens and client secrets", async () => {
    const [a, b] = await createFleet(server, 2);
    const tokenA = (await clientCredentialsToken(server.services.identity.tokenUrl, a!.clientId, a!.secret)).accessToken!;
    const tokenB = (await clientCredentialsToken(server.services.identity.tokenUrl, b!.clientId, b!.secret)).accessToken!;
    const wrongSecret = "wrong-mqtt-password-5q8z";
    const serverGuess = "guessed-server-password-3x";
    const garbageToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWd1ZXNz";

    assert.equal(await signIn({ protocolVersion: 5, clientId: "fw-a-1", username: tokenA, password: "x" }), true, "token as username");
    assert.equal(await signIn({ protocolVersion: 4, clientId: "v4-a-1", username: a!.clientId, password: tokenA }), true, "token as password");
    assert.equal(await signIn({ protocolVersion: 4, clientId: "v4-b-1", username: b!.clientId, password: b!.secret }), true, "secret as password");
    assert.equal(await signIn({ protocolVersion: 5, clientId: "bad-1", username: a!.clientId, password: wrongSecret }), false, "wrong secret");
    assert.equal(await signIn({ protocolVersion: 5, clientId: "bad-2", username: a!.clientId, password: tokenB }), false, "another device's token");
    assert.equal(await signIn({ protocolVersion: 5, clientId: "bad-3", username: garbageToken, password: "x" }), false, "garbage token");
    assert.equal(await signIn({ protocolVersion: 5, clientId: "bad-4", username: "iotsupport-server", password: serverGuess }), false, "server user");
    assert.equal(await signIn({ protocolVersion: 5, clientId: "iotsupport-server-9-abcdef", username: tokenA, password: "x" }), false, "server client id");

    assertNoSecretIn(lines, {
      "device a's token": tokenA,
      "device b's token": tokenB,
      "device a's secret": a!.secret,
      "device b's secret": b!.secret,
      "a wrong MQTT password": wrongSecret,
      "a guessed server password": serverGuess,
      "a garbage token": garbageToken,
    });
  });
});
