/**
 * Keycloak as the identity provider for devices: one confidential, service-accounts-only client per device,
 * managed through the admin REST API with the backend's own service account (client-credentials token).
 *
 * Errors: Keycloak unreachable or too slow → upstreamUnavailable (503); Keycloak answered with an error →
 * upstreamError (502). Messages name the operation and the HTTP status, never a secret or Keycloak's body.
 */
import { conflict, upstreamError, upstreamUnavailable } from "../errors.ts";
import { keycloakRealmUrls } from "./keycloak-urls.ts";
import { clientNotFound, type ClientStatus, DEVICE_CLIENT_ID, type IdentityProvider } from "./provider.ts";

type KeycloakOperation =
  | "create_client"
  | "list_clients"
  | "delete_client"
  | "get_secret"
  | "regenerate_secret"
  | "rotate_secret"
  | "retire_previous_secret"
  | "check_secret_rotation"
  | "set_secret"
  | "status"
  | "ensure_client";

export type KeycloakProviderOptions = {
  /** e.g. http://127.0.0.1:8180 (no trailing /admin or /realms). */
  baseUrl: string;
  realm: string;
  adminClientId: string;
  adminClientSecret: string;
  /** {baseUrl}/realms/{realm}/protocol/openid-connect/token. */
  tokenUrl: string;
  /** The backend's pass-through to tokenUrl, the devices' token URL while the realm keeps previous secrets. */
  passThroughTokenUrl: string;
  /** Client scope attached to every device client (adds the backend's audience), e.g. iot-device-audience. */
  deviceScopeName: string;
  /** Public URL of the Keycloak console when it differs from baseUrl. */
  consoleBaseUrl?: string;
  /** Called once per operation (metrics). Any thrown error counts as "error". */
  record?: (operation: string, status: "success" | "error") => void;
  fetch?: typeof fetch;
  /** Per HTTP request; default 10 s. */
  requestTimeoutMs?: number;
};

type Reply = { status: number; headers: Headers; text: string };
type ClientRepresentation = { id: string; clientId: string };
type ClientAttributes = Record<string, string | undefined>;

const SERVICE = "keycloak";
/** Clients per page when listing them. */
const LIST_PAGE_SIZE = 200;
const TOKEN_REFRESH_MARGIN_MS = 30_000;

const DESCRIPTIONS: Record<KeycloakOperation, string> = {
  create_client: "create the OAuth2 client",
  list_clients: "list the device clients",
  delete_client: "delete the OAuth2 client",
  get_secret: "read the client secret",
  regenerate_secret: "regenerate the client secret",
  rotate_secret: "rotate the client secret",
  retire_previous_secret: "retire the previous client secret",
  check_secret_rotation: "read the realm's client policies",
  set_secret: "set the client secret",
  status: "look up the OAuth2 client",
  ensure_client: "repair the OAuth2 client",
};

/**
 * The attribute the realm's secret-rotation client policy selects device clients by (keycloak/realm-iotsupport.json),
 * keeping the backend's own client out of it.
 */
const DEVICE_TAG = { "iot.device": "true" };

/**
 * How every device client is configured; createClient sets it and ensureClient puts it back. Keycloak merges the
 * attributes given with the client's own, so its rotation state (client.secret.*) stays.
 */
const DEVICE_CLIENT_SETTINGS = {
  attributes: DEVICE_TAG,
  enabled: true,
  protocol: "openid-connect",
  publicClient: false,
  bearerOnly: false,
  clientAuthenticatorType: "client-secret",
  serviceAccountsEnabled: true,
  standardFlowEnabled: false,
  directAccessGrantsEnabled: false,
  implicitFlowEnabled: false,
};

export function createKeycloakProvider(options: KeycloakProviderOptions): IdentityProvider {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const adminBase = keycloakRealmUrls(baseUrl, options.realm).adminApi;
  const consoleBase = (options.consoleBaseUrl ?? baseUrl).replace(/\/+$/, "");
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.requestTimeoutMs ?? 10_000;

  let cachedToken: { value: string; expiresAt: number } | null = null;
  let pendingToken: Promise<string> | null = null;
  let deviceScopeId: string | null = null;

  const failed = (op: KeycloakOperation, status: number, hint = "") =>
    upstreamError(SERVICE, `Keycloak could not ${DESCRIPTIONS[op]} (${op}: HTTP ${status}).${hint}`);

  /** One HTTP exchange; the body is read here so that a timeout while reading it is also a 503. */
  async function send(op: KeycloakOperation, url: string, init: RequestInit): Promise<Reply> {
    try {
      const res = await doFetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
      return { status: res.status, headers: res.headers, text: await res.text() };
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
      const why = timedOut ? `no answer within ${timeoutMs} ms` : "connection failed";
      throw upstreamUnavailable(SERVICE, `Keycloak is unreachable, so it could not ${DESCRIPTIONS[op]} (${op}: ${why}).`);
    }
  }

  function parse<T>(op: KeycloakOperation, reply: Reply): T {
    try {
      return JSON.parse(reply.text) as T;
    } catch {
      throw upstreamError(SERVICE, `Keycloak sent an unreadable answer while trying to ${DESCRIPTIONS[op]} (${op}).`);
    }
  }

  async function fetchToken(op: KeycloakOperation): Promise<string> {
    const reply = await send(op, options.tokenUrl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        client_id: options.adminClientId,
        client_secret: options.adminClientSecret,
      }),
    });
    if (reply.status < 200 || reply.status >= 300) {
      throw upstreamError(
        SERVICE,
        `Keycloak refused the backend's service-account login (client ${options.adminClientId}), ` +
          `so it could not ${DESCRIPTIONS[op]} (${op}: HTTP ${reply.status}). Check KEYCLOAK_ADMIN_CLIENT_ID/SECRET.`,
      );
    }
    const body = parse<{ access_token?: unknown; expires_in?: unknown }>(op, reply);
    if (typeof body.access_token !== "string") {
      throw upstreamError(SERVICE, `Keycloak's token answer has no access token (${op}).`);
    }
    const lifetimeSeconds = typeof body.expires_in === "number" ? body.expires_in : 60;
    cachedToken = { value: body.access_token, expiresAt: Date.now() + lifetimeSeconds * 1000 };
    return body.access_token;
  }

  /** The cached admin token, or a new one (concurrent callers share one token request). */
  function adminToken(op: KeycloakOperation): Promise<string> {
    if (cachedToken && Date.now() < cachedToken.expiresAt - TOKEN_REFRESH_MARGIN_MS) {
      return Promise.resolve(cachedToken.value);
    }
    pendingToken ??= fetchToken(op).finally(() => {
      pendingToken = null;
    });
    return pendingToken;
  }

  /** An admin API call; a 401 (token revoked or expired early) is retried once with a fresh token. */
  async function admin(op: KeycloakOperation, method: string, path: string, body?: unknown): Promise<Reply> {
    const call = async () => {
      const token = await adminToken(op);
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: "application/json" };
      if (body !== undefined) headers["content-type"] = "application/json";
      const init: RequestInit = { method, headers };
      if (body !== undefined) init.body = JSON.stringify(body);
      return { token, reply: await send(op, `${adminBase}${path}`, init) };
    };
    const first = await call();
    if (first.reply.status !== 401) return first.reply;
    if (cachedToken?.value === first.token) cachedToken = null;
    return (await call()).reply;
  }

  const ok = (reply: Reply) => reply.status >= 200 && reply.status < 300;
  const forbiddenHint = (reply: Reply) =>
    reply.status === 403 ? " The backend's service account needs realm-management manage-clients and view-clients." : "";

  function check(op: KeycloakOperation, reply: Reply, clientId?: string): Reply {
    if (ok(reply)) return reply;
    if (reply.status === 404 && clientId !== undefined) throw clientNotFound(clientId);
    throw failed(op, reply.status, forbiddenHint(reply));
  }

  async function findClient(op: KeycloakOperation, clientId: string): Promise<ClientRepresentation | null> {
    const reply = check(op, await admin(op, "GET", `/clients?clientId=${encodeURIComponent(clientId)}`));
    const clients = parse<ClientRepresentation[]>(op, reply);
    return (Array.isArray(clients) && clients.find((c) => c.clientId === clientId)) || null;
  }

  async function requireClient(op: KeycloakOperation, clientId: string): Promise<ClientRepresentation> {
    const client = await findClient(op, clientId);
    if (!client) throw clientNotFound(clientId);
    return client;
  }

  async function lookUpDeviceScope(op: KeycloakOperation): Promise<string> {
    if (deviceScopeId) return deviceScopeId;
    const scopes = parse<{ id: string; name: string }[]>(op, check(op, await admin(op, "GET", "/client-scopes")));
    const scope = Array.isArray(scopes) ? scopes.find((s) => s.name === options.deviceScopeName) : undefined;
    if (!scope) {
      throw upstreamError(
        SERVICE,
        `Keycloak realm ${options.realm} has no client scope named ${options.deviceScopeName} ` +
          `(KEYCLOAK_DEVICE_SCOPE_NAME), so device tokens would lack the backend's audience (${op}).`,
      );
    }
    deviceScopeId = scope.id;
    return scope.id;
  }

  async function secretOf(op: KeycloakOperation, clientId: string, uuid: string, method: "GET" | "POST") {
    const reply = check(op, await admin(op, method, `/clients/${uuid}/client-secret`), clientId);
    const body = parse<{ value?: unknown }>(op, reply);
    if (typeof body.value !== "string" || body.value === "") {
      throw upstreamError(SERVICE, `Keycloak's answer has no client secret (${op}).`);
    }
    return body.value;
  }

  async function createDeviceClient(op: KeycloakOperation, clientId: string) {
    const scopeId = await lookUpDeviceScope(op);
    const created = await admin(op, "POST", "/clients", {
      clientId,
      name: clientId,
      description: "IoT device (managed by the IoT Support backend)",
      ...DEVICE_CLIENT_SETTINGS,
    });
    if (created.status === 409) throw conflict(`An OAuth2 client ${clientId} already exists in Keycloak.`);
    check(op, created);
    const uuid = created.headers.get("location")?.split("/").pop();
    if (!uuid) throw upstreamError(SERVICE, `Keycloak did not say where it created the client (${op}).`);
    try {
      check(op, await admin(op, "PUT", `/clients/${uuid}/default-client-scopes/${scopeId}`));
      return { externalId: uuid, secret: await secretOf(op, clientId, uuid, "GET") };
    } catch (error) {
      // No half-created client: remove it, then report the original failure.
      await admin(op, "DELETE", `/clients/${uuid}`).catch(() => undefined);
      throw error;
    }
  }

  async function run<T>(op: KeycloakOperation, work: () => Promise<T>): Promise<T> {
    try {
      const result = await work();
      options.record?.(op, "success");
      return result;
    } catch (error) {
      options.record?.(op, "error");
      throw error;
    }
  }

  /** 404: Keycloak keeps no previous secret of this client (none now, or no rotation policy covers it). */
  async function dropRotatedSecret(op: KeycloakOperation, clientId: string, uuid: string) {
    const reply = await admin(op, "DELETE", `/clients/${uuid}/client-secret/rotated`);
    if (reply.status !== 404) check(op, reply, clientId);
  }

  const attributesOf = async (op: KeycloakOperation, clientId: string, uuid: string) =>
    parse<{ attributes?: ClientAttributes }>(op, check(op, await admin(op, "GET", `/clients/${uuid}`), clientId)).attributes ?? {};

  /** Epoch seconds in a client attribute as a date; null when absent. */
  const dateIn = (attributes: ClientAttributes, key: string) => {
    const seconds = Number(attributes[key]);
    return attributes[key] !== undefined && Number.isFinite(seconds) ? new Date(seconds * 1000) : null;
  };

  /**
   * The rotation policy covers a client when Keycloak gave its secret an expiry. A client made before device clients
   * were tagged gets the tag first; one still not covered is not rotated, since rotating would end its secret at once.
   */
  async function coveredAttributes(op: KeycloakOperation, clientId: string, uuid: string): Promise<ClientAttributes> {
    const attributes = await attributesOf(op, clientId, uuid);
    if (attributes["client.secret.expiration.time"] !== undefined) return attributes;
    check(op, await admin(op, "PUT", `/clients/${uuid}`, { clientId, attributes: DEVICE_TAG }), clientId);
    const tagged = await attributesOf(op, clientId, uuid);
    if (tagged["client.secret.expiration.time"] !== undefined) return tagged;
    throw upstreamError(SERVICE, `Keycloak's secret-rotation policy does not cover client ${clientId}, so it was not rotated (${op}).`);
  }

  type Condition = { condition: string; configuration?: { attributes?: string } };
  type Policy = { name: string; enabled?: boolean; profiles?: string[]; conditions?: Condition[] };
  type Profile = { name: string; executors?: { executor: string }[] };

  /** Whether the realm has an enabled client policy that applies secret rotation to clients tagged as devices. */
  async function realmRotatesSecrets(): Promise<boolean> {
    const op = "check_secret_rotation";
    const read = async <T>(path: string) => {
      const reply = await admin(op, "GET", path);
      if (reply.status === 403) throw failed(op, 403, " The backend's service account needs realm-management view-realm.");
      return parse<T>(op, check(op, reply));
    };
    const { profiles = [] } = await read<{ profiles?: Profile[] }>("/client-policies/profiles");
    const { policies = [] } = await read<{ policies?: Policy[] }>("/client-policies/policies");
    const rotating = new Set(profiles.filter((p) => p.executors?.some((e) => e.executor === "secret-rotation")).map((p) => p.name));
    const selectsDevices = (c: Condition) => c.condition === "client-attributes" && (c.configuration?.attributes ?? "").includes('"iot.device"');
    return policies.some((p) => p.enabled && p.profiles?.some((name) => rotating.has(name)) && p.conditions?.some(selectsDevices));
  }

  // Asked once; a failed check (Keycloak unreachable) is asked again next time.
  let rotation: Promise<boolean> | null = null;
  const keepsPreviousSecret = () => {
    rotation ??= run("check_secret_rotation", realmRotatesSecrets).catch((error) => {
      rotation = null;
      throw error;
    });
    return rotation;
  };

  return {
    kind: "keycloak",
    keepsPreviousSecret,
    tokenUrl: options.tokenUrl,
    deviceTokenUrl: async () => ((await keepsPreviousSecret()) ? options.passThroughTokenUrl : options.tokenUrl),

    createClient: (clientId) => run("create_client", () => createDeviceClient("create_client", clientId)),

    // Keycloak's clientId search is a substring match: the device prefix narrows it, DEVICE_CLIENT_ID decides.
    listClientIds: () =>
      run("list_clients", async () => {
        const op = "list_clients";
        const ids: string[] = [];
        for (let first = 0; ; first += LIST_PAGE_SIZE) {
          const query = new URLSearchParams({ clientId: "iotdevice-", search: "true", first: String(first), max: String(LIST_PAGE_SIZE) });
          const page = parse<ClientRepresentation[]>(op, check(op, await admin(op, "GET", `/clients?${query}`)));
          if (!Array.isArray(page)) throw upstreamError(SERVICE, `Keycloak's answer is not a list of clients (${op}).`);
          ids.push(...page.map((client) => client.clientId).filter((id) => DEVICE_CLIENT_ID.test(id)));
          if (page.length < LIST_PAGE_SIZE) return ids.sort();
        }
      }),

    deleteClient: (clientId) =>
      run("delete_client", async () => {
        const client = await findClient("delete_client", clientId);
        if (!client) return;
        const reply = await admin("delete_client", "DELETE", `/clients/${client.id}`);
        if (reply.status !== 404) check("delete_client", reply);
      }),

    getSecret: (clientId) =>
      run("get_secret", async () => {
        const client = await requireClient("get_secret", clientId);
        return secretOf("get_secret", clientId, client.id, "GET");
      }),

    // Under the rotation policy Keycloak keeps the replaced secret: a regenerated one must end at once.
    regenerateSecret: (clientId) =>
      run("regenerate_secret", async () => {
        const op = "regenerate_secret";
        const client = await requireClient(op, clientId);
        const secret = await secretOf(op, clientId, client.id, "POST");
        await dropRotatedSecret(op, clientId, client.id);
        return secret;
      }),

    // Keycloak's policy decides how long the previous secret lives (rotated-expiration-period), not the caller.
    rotateSecret: (clientId) =>
      run("rotate_secret", async () => {
        const op = "rotate_secret";
        const client = await requireClient(op, clientId);
        const unrecorded = dateIn(await coveredAttributes(op, clientId, client.id), "client.secret.rotated.expiration.time");
        if (unrecorded && unrecorded > new Date()) {
          return { secret: await secretOf(op, clientId, client.id, "GET"), generation: null, previousValidUntil: unrecorded };
        }
        const secret = await secretOf(op, clientId, client.id, "POST");
        const previousValidUntil = dateIn(await attributesOf(op, clientId, client.id), "client.secret.rotated.expiration.time");
        if (!previousValidUntil) throw upstreamError(SERVICE, `Keycloak kept no previous secret of client ${clientId} (${op}).`);
        return { secret, generation: null, previousValidUntil };
      }),

    retirePreviousSecret: (clientId) =>
      run("retire_previous_secret", async () => {
        const client = await requireClient("retire_previous_secret", clientId);
        await dropRotatedSecret("retire_previous_secret", clientId, client.id);
      }),

    setSecret: (clientId, secret) =>
      run("set_secret", async () => {
        const client = await requireClient("set_secret", clientId);
        check("set_secret", await admin("set_secret", "PUT", `/clients/${client.id}`, { clientId, secret }), clientId);
      }),

    status: (clientId) =>
      run("status", async (): Promise<ClientStatus> => {
        const client = await findClient("status", clientId);
        if (!client) return { exists: false, externalId: null, consoleUrl: null };
        return {
          exists: true,
          externalId: client.id,
          consoleUrl: `${consoleBase}/admin/master/console/#/${encodeURIComponent(options.realm)}/clients/${client.id}/settings`,
        };
      }),

    ensureClient: (clientId) =>
      run("ensure_client", async () => {
        const op = "ensure_client";
        const client = await findClient(op, clientId);
        if (!client) {
          await createDeviceClient(op, clientId);
          return { created: true };
        }
        const scopeId = await lookUpDeviceScope(op);
        // A partial representation: Keycloak updates only the fields given, so the secret stays.
        check(op, await admin(op, "PUT", `/clients/${client.id}`, { clientId, ...DEVICE_CLIENT_SETTINGS }), clientId);
        check(op, await admin(op, "PUT", `/clients/${client.id}/default-client-scopes/${scopeId}`), clientId);
        return { created: false };
      }),
  };
}
