/** What every unit test of a route needs: fake services, plain Requests as clients send them, and seeded rows. */
import assert from "node:assert/strict";
import { routesFor } from "../../functions/index.ts";
import { runRoute } from "../../lib/http/app.ts";
import type { EdgeServices, Route } from "../../lib/http/route.ts";
import { deviceToken, NON_ADMIN_TOKEN } from "../support/fakes/auth.ts";
import { assertErrorEnvelope } from "../support/envelope.ts";
import { BASE_URL, fakeServices } from "../support/fakes/index.ts";
import { ADMIN_TOKEN } from "../support/tokens.ts";

type RequestOptions = { token?: string | null; body?: unknown; headers?: Record<string, string> };

/** A request to `path`; a body that is not a string, Blob, FormData or URLSearchParams is sent as JSON. */
export function request(method: string, path: string, { token = null, body, headers = {} }: RequestOptions = {}): Request {
  const init: RequestInit & { headers: Record<string, string> } = { method, headers: { ...headers } };
  if (token) init.headers.authorization = `Bearer ${token}`;
  if (typeof body === "string" || body instanceof Blob || body instanceof FormData || body instanceof URLSearchParams) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] ??= "application/json";
  }
  return new Request(`${BASE_URL}${path}`, init);
}

export const asAdmin = (method: string, path: string, options: Omit<RequestOptions, "token"> = {}) => request(method, path, { ...options, token: ADMIN_TOKEN });

/** The fakes the HTTP edge itself uses (EdgeServices); a test adds what its route `uses`: runRoute(route, request, { ...edge, models }). */
export function edgeOf({ config, auth, logger, metrics, logDatabaseOutage }: EdgeServices): EdgeServices {
  return { config, auth, logger, metrics, logDatabaseOutage };
}

/** Fake services, a way to run one route over them, and rows to start from. */
export function unitApp(options: Parameters<typeof fakeServices>[0] = {}) {
  const fakes = fakeServices(options);
  const { services } = fakes;
  return {
    ...fakes,
    run: (route: Route, incoming: Request) => runRoute(route, incoming, services),
    /** Only what the edge uses: runRoute(route, request, { ...app.edge, <the route's uses> }) runs it over no more than that. */
    edge: edgeOf(services),
    /** Whether the server would serve this route over these services (a disabled provider's routes are left out). */
    serves: (route: Route) => routesFor(services).includes(route),
    async model(code = "sensor", configSchema: string | null = null) {
      return services.models.create({ code, name: `Model ${code}`, config_schema: configSchema }, "test-admin");
    },
    /** A device of a new (or the given) model, and a token made with its current secret. */
    async device(config: Record<string, unknown> = { deviceName: "Kitchen" }, modelId?: number) {
      const device = await services.devices.create({ device_model_id: modelId ?? (await this.model(`m${fakes.world.nextId()}`)).id, config: JSON.stringify(config) }, "test-admin");
      return { device, token: deviceToken(device.client_id, await services.identity.getSecret(device.client_id)) };
    },
  };
}

export type UnitApp = ReturnType<typeof unitApp>;

/** Asserts the error envelope (test/support/envelope.ts) with this status and code; returns it. */
export async function expectError(response: Response, status: number, code: string) {
  const envelope = await assertErrorEnvelope(response, status, `${status} ${code}`);
  assert.equal(envelope.code, code, envelope.error);
  return envelope;
}

/** An admin route: 401 without a token or with an unknown one, 403 for a signed-in user without the admin role. */
export async function expectAdminOnly(route: Route, method: string, path: string, options: Omit<RequestOptions, "token"> = {}) {
  const app = unitApp();
  await expectError(await app.run(route, request(method, path, options)), 401, "UNAUTHORIZED");
  await expectError(await app.run(route, request(method, path, { ...options, token: "not-a-token" })), 401, "INVALID_TOKEN");
  await expectError(await app.run(route, request(method, path, { ...options, token: NON_ADMIN_TOKEN })), 403, "FORBIDDEN");
}

/** A device route: 401 without a token, and with a token whose secret is not (or no longer) the device's. */
export async function expectDeviceOnly(route: Route, path: string) {
  const app = unitApp();
  const { device } = await app.device();
  await expectError(await app.run(route, request(route.method, path)), 401, "UNAUTHORIZED");
  await expectError(await app.run(route, request(route.method, path, { token: deviceToken(device.client_id, "wrong-secret") })), 401, "INVALID_TOKEN");
  await expectError(await app.run(route, asAdmin(route.method, path)), 401, "INVALID_TOKEN");
}
