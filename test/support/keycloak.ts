/**
 * The real Keycloak used by tests (started with `bash keycloak/start.sh`, realm keycloak/realm-iotsupport.json).
 * Tests never skip when it is missing: requireKeycloak() fails loudly instead.
 */
import { keycloakCertsUrl, keycloakRealmUrls } from "../../lib/identity/keycloak-urls.ts";

export type KeycloakTestSettings = {
  baseUrl: string;
  realm: string;
  issuer: string;
  tokenUrl: string;
  jwksUrl: string;
  /** The realm's admin REST API. */
  adminApi: string;
  /** The backend's confidential client (service account with manage-clients/view-clients/query-clients). */
  adminClientId: string;
  adminClientSecret: string;
  /** The audience the backend expects in admin and device tokens. */
  audience: string;
  deviceScopeName: string;
  /** Public client with the password grant enabled (for user tokens in tests). */
  uiClientId: string;
  users: {
    admin: { username: string; password: string };
    viewer: { username: string; password: string };
  };
};

export function keycloakTestSettings(): KeycloakTestSettings {
  // The Keycloak keycloak/start.sh runs, on its KEYCLOAK_PORT; KEYCLOAK_TEST_URL names any other.
  const baseUrl = (process.env.KEYCLOAK_TEST_URL ?? `http://127.0.0.1:${process.env.KEYCLOAK_PORT ?? 8180}`).replace(/\/+$/, "");
  const realm = "iotsupport";
  const { issuer, tokenUrl, adminApi } = keycloakRealmUrls(baseUrl, realm);
  return {
    baseUrl,
    realm,
    issuer,
    tokenUrl,
    jwksUrl: keycloakCertsUrl(issuer),
    adminApi,
    adminClientId: "iot-backend",
    adminClientSecret: "iot-backend-dev-secret",
    audience: "iot-backend",
    deviceScopeName: "iot-device-audience",
    uiClientId: "iot-support-ui",
    users: {
      admin: { username: "iotadmin", password: "iotadmin" },
      viewer: { username: "iotviewer", password: "iotviewer" },
    },
  };
}

/** Throws a loud error unless Keycloak answers with the test realm. Returns the settings. */
export async function requireKeycloak(): Promise<KeycloakTestSettings> {
  const settings = keycloakTestSettings();
  const discovery = `${settings.issuer}/.well-known/openid-configuration`;
  let status: number;
  try {
    const res = await fetch(discovery, { signal: AbortSignal.timeout(5000) });
    status = res.status;
    await res.body?.cancel();
  } catch {
    throw new Error(`Keycloak is not running on ${settings.baseUrl}: run \`bash keycloak/start.sh\``);
  }
  if (status === 404) {
    throw new Error(
      `Keycloak on ${settings.baseUrl} has no realm ${settings.realm}: run \`bash keycloak/start.sh reset\``,
    );
  }
  if (status !== 200) {
    throw new Error(`Keycloak on ${settings.baseUrl} is not ready (HTTP ${status}): run \`bash keycloak/start.sh\``);
  }
  return settings;
}

export type TokenResult = { ok: boolean; status: number; accessToken?: string; expiresIn?: number };

async function tokenRequest(tokenUrl: string, form: Record<string, string>): Promise<TokenResult> {
  const res = await fetch(tokenUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form),
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await res.json().catch(() => ({}))) as { access_token?: string; expires_in?: number };
  return res.ok && body.access_token
    ? { ok: true, status: res.status, accessToken: body.access_token, expiresIn: body.expires_in }
    : { ok: false, status: res.status };
}

export function clientCredentialsToken(tokenUrl: string, clientId: string, secret: string): Promise<TokenResult> {
  return tokenRequest(tokenUrl, { grant_type: "client_credentials", client_id: clientId, client_secret: secret });
}

/** A user's access token via the public iot-support-ui client (password grant). */
export function passwordToken(username: string, password: string): Promise<TokenResult> {
  const settings = keycloakTestSettings();
  return tokenRequest(settings.tokenUrl, {
    grant_type: "password",
    client_id: settings.uiClientId,
    username,
    password,
    scope: "openid",
  });
}
