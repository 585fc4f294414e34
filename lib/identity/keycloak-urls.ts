/** Where a Keycloak realm's endpoints are, from Keycloak's base URL (without /realms or /admin) and the realm's name. */
export function keycloakRealmUrls(baseUrl: string, realm: string) {
  const base = baseUrl.replace(/\/+$/, "");
  const issuer = `${base}/realms/${encodeURIComponent(realm)}`;
  return {
    /** The `iss` of the realm's tokens. */
    issuer,
    tokenUrl: `${issuer}/protocol/openid-connect/token`,
    /** The admin REST API of the realm (device clients). */
    adminApi: `${base}/admin/realms/${encodeURIComponent(realm)}`,
  };
}

/** The realm's signing keys (JWKS), from its issuer URL. */
export const keycloakCertsUrl = (issuer: string) => `${issuer}/protocol/openid-connect/certs`;
