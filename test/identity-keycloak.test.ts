/**
 * The Keycloak identity provider against the real Keycloak (`bash keycloak/start.sh`).
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { decodeJwt } from "jose";
import { AppError } from "../lib/errors.ts";
import { createKeycloakProvider, type KeycloakProviderOptions } from "../lib/identity/keycloak.ts";
import { keycloakRealmUrls } from "../lib/identity/keycloak-urls.ts";
import { describeIdentityProviderContract, testClientId } from "./support/identity-contract.ts";
import { clientCredentialsToken, requireKeycloak } from "./support/keycloak.ts";

const kc = await requireKeycloak();
const adminBase = kc.adminApi;

function options(overrides: Partial<KeycloakProviderOptions> = {}): KeycloakProviderOptions {
  return {
    baseUrl: kc.baseUrl,
    realm: kc.realm,
    adminClientId: kc.adminClientId,
    adminClientSecret: kc.adminClientSecret,
    tokenUrl: kc.tokenUrl,
    passThroughTokenUrl: "http://iot.test/oauth2/token",
    deviceScopeName: kc.deviceScopeName,
    ...overrides,
  };
}

/** A fetch that counts token and admin calls and can replace answers. */
function spyFetch(replace?: (url: string, init: RequestInit | undefined, n: number) => Response | undefined) {
  const calls = { token: 0, admin: 0, urls: [] as string[] };
  const wrapped: typeof fetch = async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    calls.urls.push(`${init?.method ?? "GET"} ${url}`);
    if (url === kc.tokenUrl) calls.token++;
    if (url.startsWith(adminBase)) calls.admin++;
    return replace?.(url, init, calls.admin) ?? fetch(input, init);
  };
  return { calls, fetch: wrapped };
}

async function adminHeaders() {
  const token = await clientCredentialsToken(kc.tokenUrl, kc.adminClientId, kc.adminClientSecret);
  return { authorization: `Bearer ${token.accessToken}` };
}

function assertAppError(error: unknown, status: number, code: string): AppError {
  assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`);
  assert.equal(error.status, status, error.message);
  assert.equal(error.code, code);
  return error;
}

describeIdentityProviderContract("keycloak", async () => ({
  provider: createKeycloakProvider(options()),
  async canAuthenticate(clientId, secret) {
    const result = await clientCredentialsToken(kc.tokenUrl, clientId, secret);
    if (!result.ok) {
      assert.equal(result.status, 401, `unexpected HTTP ${result.status} from the token endpoint`);
      return false;
    }
    const claims = decodeJwt(result.accessToken!);
    assert.equal(claims.azp, clientId);
    assert.equal(claims.iss, kc.issuer);
    assert.ok([claims.aud].flat().includes(kc.audience), `aud ${JSON.stringify(claims.aud)} lacks ${kc.audience}`);
    return true;
  },
  async close() {},
}));

describe("keycloak provider", () => {
  const good = createKeycloakProvider(options());
  const created: string[] = [];
  after(async () => {
    for (const clientId of created) await good.deleteClient(clientId);
  });

  it("exposes the realm token URL and a console link for existing clients", async () => {
    assert.equal(good.kind, "keycloak");
    assert.equal(good.tokenUrl, kc.tokenUrl);
    const provider = createKeycloakProvider(options({ consoleBaseUrl: "https://sso.example.test/" }));
    const clientId = testClientId();
    created.push(clientId);
    const { externalId } = await provider.createClient(clientId);
    assert.deepEqual(await provider.status(clientId), {
      exists: true,
      externalId,
      consoleUrl: `https://sso.example.test/admin/master/console/#/${kc.realm}/clients/${externalId}/settings`,
    });
    assert.match((await good.status(clientId)).consoleUrl ?? "", new RegExp(`^${kc.baseUrl}/admin/master/console/#/`));
  });

  it("device tokens carry azp, client_id and the backend audience", async () => {
    const clientId = testClientId();
    created.push(clientId);
    const { secret } = await good.createClient(clientId);
    const token = await clientCredentialsToken(kc.tokenUrl, clientId, secret);
    assert.ok(token.ok);
    const claims = decodeJwt(token.accessToken!);
    assert.equal(claims.azp, clientId);
    assert.equal(claims.client_id, clientId);
    assert.ok([claims.aud].flat().includes(kc.audience));
  });

  it("tags device clients for the realm's secret-rotation policy, and devices get the backend's pass-through", async () => {
    assert.equal(await good.deviceTokenUrl(), "http://iot.test/oauth2/token");
    const clientId = testClientId();
    created.push(clientId);
    const { externalId } = await good.createClient(clientId);
    const client = await (await fetch(`${adminBase}/clients/${externalId}`, { headers: await adminHeaders() })).json();
    assert.equal(client.attributes["iot.device"], "true");
    assert.ok(client.attributes["client.secret.expiration.time"], "the policy covers it");
  });

  it("a client made before device clients were tagged is tagged at its rotation, so its old secret keeps working", async () => {
    const clientId = testClientId();
    created.push(clientId);
    const made = await fetch(`${adminBase}/clients`, {
      method: "POST",
      headers: { ...(await adminHeaders()), "content-type": "application/json" },
      body: JSON.stringify({ clientId, publicClient: false, serviceAccountsEnabled: true, standardFlowEnabled: false }),
    });
    assert.equal(made.status, 201);
    const old = await good.getSecret(clientId);
    const { secret: fresh } = await good.rotateSecret(clientId, new Date());
    assert.equal((await clientCredentialsToken(kc.tokenUrl, clientId, old)).ok, true);
    assert.equal((await clientCredentialsToken(kc.tokenUrl, clientId, fresh)).ok, true);
  });

  it("a realm without the secret-rotation policy: no previous secret kept, devices keep Keycloak's token URL", async () => {
    const noPolicies = spyFetch((url) => (url.endsWith("/client-policies/policies") ? Response.json({ policies: [] }) : undefined));
    const provider = createKeycloakProvider(options({ fetch: noPolicies.fetch }));
    assert.equal(await provider.keepsPreviousSecret(), false);
    assert.equal(await provider.deviceTokenUrl(), kc.tokenUrl);
  });

  it("an unreachable Keycloak is a 503 UPSTREAM_UNAVAILABLE", async () => {
    const recorded: string[] = [];
    const provider = createKeycloakProvider(
      options({
        baseUrl: "http://127.0.0.1:1",
        tokenUrl: keycloakRealmUrls("http://127.0.0.1:1", kc.realm).tokenUrl,
        record: (op, status) => recorded.push(`${op}:${status}`),
      }),
    );
    await assert.rejects(provider.status(testClientId()), (error) => {
      assertAppError(error, 503, "UPSTREAM_UNAVAILABLE");
      return true;
    });
    await assert.rejects(provider.createClient(testClientId()), (error) => {
      assertAppError(error, 503, "UPSTREAM_UNAVAILABLE");
      return true;
    });
    assert.deepEqual(recorded, ["status:error", "create_client:error"]);
  });

  it("a Keycloak that does not answer in time is a 503", async () => {
    // Never answers; only the provider's timeout ends it. (AbortSignal.timeout does not keep Node alive: the
    // ref'd timer stands in for the open socket a real hanging request would have.)
    const hang: typeof fetch = (_input, init) =>
      new Promise((_resolve, reject) => {
        const keepAlive = setTimeout(() => reject(new Error("the provider's timeout did not fire")), 5000);
        init?.signal?.addEventListener("abort", () => {
          clearTimeout(keepAlive);
          reject(init.signal!.reason);
        });
      });
    const provider = createKeycloakProvider(options({ fetch: hang, requestTimeoutMs: 100 }));
    await assert.rejects(provider.getSecret(testClientId()), (error) => {
      const appError = assertAppError(error, 503, "UPSTREAM_UNAVAILABLE");
      assert.match(appError.message, /get_secret/);
      return true;
    });
  });

  it("a wrong admin secret is a 502 UPSTREAM_ERROR that does not show the secret", async () => {
    const wrongSecret = "wrong-admin-secret-7f3a9c";
    const provider = createKeycloakProvider(options({ adminClientSecret: wrongSecret }));
    await assert.rejects(provider.getSecret(testClientId()), (error) => {
      const appError = assertAppError(error, 502, "UPSTREAM_ERROR");
      assert.match(appError.message, /get_secret/);
      assert.match(appError.message, /HTTP 401/);
      const everything = `${appError.message} ${JSON.stringify(appError.details)} ${appError.stack}`;
      assert.ok(!everything.includes(wrongSecret), "the secret leaked into the error");
      assert.ok(!everything.includes(kc.adminClientSecret), "the real secret leaked into the error");
      return true;
    });
  });

  it("reuses the admin token across calls", async () => {
    const spy = spyFetch();
    const provider = createKeycloakProvider(options({ fetch: spy.fetch }));
    const clientId = testClientId();
    created.push(clientId);
    await provider.createClient(clientId);
    await provider.getSecret(clientId);
    await provider.regenerateSecret(clientId);
    await Promise.all([provider.status(clientId), provider.status(clientId), provider.getSecret(clientId)]);
    await provider.deleteClient(clientId);
    assert.equal(spy.calls.token, 1);
    assert.ok(spy.calls.admin >= 10);
  });

  it("concurrent first calls share one token request", async () => {
    const spy = spyFetch();
    const provider = createKeycloakProvider(options({ fetch: spy.fetch }));
    await Promise.all([1, 2, 3, 4].map(() => provider.status(testClientId())));
    assert.equal(spy.calls.token, 1);
  });

  it("a 401 from the admin API is retried exactly once with a fresh token", async () => {
    const spy = spyFetch((url, _init, n) =>
      url.startsWith(adminBase) && n === 1 ? new Response('{"error":"HTTP 401 Unauthorized"}', { status: 401 }) : undefined,
    );
    const provider = createKeycloakProvider(options({ fetch: spy.fetch }));
    assert.equal((await provider.status(testClientId())).exists, false);
    assert.equal(spy.calls.token, 2);
    assert.equal(spy.calls.admin, 2);
    // The fresh token is cached again.
    await provider.status(testClientId());
    assert.equal(spy.calls.token, 2);
  });

  it("a second 401 is a 502 (no retry loop)", async () => {
    const spy = spyFetch((url) => (url.startsWith(adminBase) ? new Response(null, { status: 401 }) : undefined));
    const provider = createKeycloakProvider(options({ fetch: spy.fetch }));
    await assert.rejects(provider.status(testClientId()), (error) => {
      const appError = assertAppError(error, 502, "UPSTREAM_ERROR");
      assert.match(appError.message, /status/);
      assert.match(appError.message, /HTTP 401/);
      return true;
    });
    assert.equal(spy.calls.token, 2);
    assert.equal(spy.calls.admin, 2);
  });

  it("an error answer becomes a 502 without Keycloak's body", async () => {
    const body = '{"error":"unknown_error","detail":"SENSITIVE-UPSTREAM-DETAIL"}';
    const spy = spyFetch((url) => (url.startsWith(adminBase) ? new Response(body, { status: 500 }) : undefined));
    const provider = createKeycloakProvider(options({ fetch: spy.fetch }));
    await assert.rejects(provider.regenerateSecret(testClientId()), (error) => {
      const appError = assertAppError(error, 502, "UPSTREAM_ERROR");
      assert.match(appError.message, /regenerate_secret/);
      assert.match(appError.message, /HTTP 500/);
      assert.ok(!appError.message.includes("SENSITIVE"));
      assert.ok(!appError.message.includes(kc.baseUrl), "no upstream URL in the message");
      return true;
    });
  });

  it("a missing device scope is a clear 502 and creates nothing", async () => {
    const provider = createKeycloakProvider(options({ deviceScopeName: "no-such-scope" }));
    const clientId = testClientId();
    created.push(clientId);
    await assert.rejects(provider.createClient(clientId), (error) => {
      const appError = assertAppError(error, 502, "UPSTREAM_ERROR");
      assert.match(appError.message, /no-such-scope/);
      return true;
    });
    assert.equal((await good.status(clientId)).exists, false);
  });

  it("a failure to attach the device scope deletes the new client (no half-created client)", async () => {
    const spy = spyFetch((url, init) =>
      init?.method === "PUT" && url.includes("/default-client-scopes/") ? new Response(null, { status: 500 }) : undefined,
    );
    const provider = createKeycloakProvider(options({ fetch: spy.fetch }));
    const clientId = testClientId();
    created.push(clientId);
    await assert.rejects(provider.createClient(clientId), (error) => {
      assertAppError(error, 502, "UPSTREAM_ERROR");
      return true;
    });
    assert.ok(spy.calls.urls.some((call) => call.startsWith(`POST ${adminBase}/clients`)), "the client was created");
    assert.ok(spy.calls.urls.some((call) => call.startsWith(`DELETE ${adminBase}/clients/`)), "and deleted again");
    assert.equal((await good.status(clientId)).exists, false);
  });

  it("records every operation with success or error", async () => {
    const recorded: string[] = [];
    const provider = createKeycloakProvider(options({ record: (op, status) => recorded.push(`${op}:${status}`) }));
    const clientId = testClientId();
    created.push(clientId);
    const { secret } = await provider.createClient(clientId);
    await provider.getSecret(clientId);
    await provider.regenerateSecret(clientId);
    await provider.setSecret(clientId, secret);
    await provider.status(clientId);
    await provider.deleteClient(clientId);
    await assert.rejects(provider.getSecret(clientId));
    await assert.rejects(provider.createClient(kc.adminClientId)); // exists: 409
    assert.deepEqual(recorded, [
      "create_client:success",
      "get_secret:success",
      "regenerate_secret:success",
      "set_secret:success",
      "status:success",
      "delete_client:success",
      "get_secret:error",
      "create_client:error",
    ]);
  });
});
