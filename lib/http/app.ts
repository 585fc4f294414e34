import { randomUUID } from "node:crypto";
import { Router } from "itty-router";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { errorMessage, errorStack, withRequestId } from "../logger.ts";
import { readJsonBody } from "./body.ts";
import { clientAddress, type Connection } from "./client-address.ts";
import { AppError, notFound } from "../errors.ts";
import { errorResponse } from "./respond.ts";
import type { Route, RouteServices, ServiceName } from "./route.ts";
import { parseInput, parseParams, queryParams } from "./validate.ts";

type RequestState = {
  requestId: string;
  route: Route | null;
  clientAddress: string | null;
  /** Set-Cookie headers for whatever response goes out, also an error (the authenticator refreshing a session). */
  cookies: string[];
  /** The connection's "response sent" notice; never calls back for HEAD; undefined where the server has none. */
  onResponseSent: Connection["onResponseSent"];
};
type RoutedRequest = Request & { params: Record<string, string>; query: Record<string, string | string[]> };

const SAFE_REQUEST_ID = /^[\w.:-]{1,128}$/;
const pickRequestId = (request: Request) => {
  const given = request.headers.get("x-request-id");
  return given && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
};

const methodNotAllowed = (allowed: string[]) =>
  new AppError(405, "METHOD_NOT_ALLOWED", `This URL accepts only ${allowed.join(", ")}.`, { allowed }, { allow: allowed.join(", ") });

/** Adds the request id and the cookies decided while authenticating; false when the headers are immutable (e.g. a fetch() result). */
function stampHeaders(headers: Headers, requestId: string, cookies: string[]): boolean {
  try {
    headers.set("x-request-id", requestId);
  } catch {
    return false;
  }
  for (const cookie of cookies) headers.append("set-cookie", cookie);
  return true;
}

/**
 * Builds the fetch handler: route list → itty-router, with auth, input parsing, the error envelope, logs, metrics.
 * `services` is what the edge uses plus what the routes use (the server passes all of Services).
 */
export function createApp<U extends ServiceName>(
  routes: Route<U>[],
  services: RouteServices<NoInfer<U>>,
): (request: Request, connection?: Connection) => Promise<Response> {
  const router = Router<RoutedRequest, [RequestState]>();

  for (const route of routes) {
    router[route.method.toLowerCase() as "get"](route.path, async (request: RoutedRequest, state: RequestState) => {
      state.route = route;
      const principal = await services.auth.authenticate(request, route.access, state.cookies);
      const { params, query, body } = route.request ?? {};
      return route.handler(request, {
        services,
        routes,
        logger: services.logger,
        principal,
        clientAddress: state.clientAddress,
        responseCookies: state.cookies,
        onResponseSent: state.onResponseSent,
        params: params ? parseParams(params, request.params) : undefined,
        query: query ? parseInput(query, queryParams(request.url)) : undefined,
        body: body ? parseInput(body, await readJsonBody(request)) : undefined,
      });
    });
  }
  for (const path of new Set(routes.map((route) => route.path))) {
    const allowed: string[] = routes.filter((route) => route.path === path).map((route) => route.method);
    if (allowed.includes("GET")) allowed.push("HEAD");
    router.all(path, () => {
      throw methodNotAllowed(allowed);
    });
  }
  router.all("*", () => {
    throw notFound("There is no such endpoint.", "ROUTE_NOT_FOUND");
  });

  return async function handle(incoming: Request, connection?: Connection): Promise<Response> {
    const started = performance.now();
    const isHead = incoming.method === "HEAD";
    const state: RequestState = {
      requestId: pickRequestId(incoming),
      route: null,
      clientAddress: clientAddress(incoming, connection?.remoteAddress ?? null, services.config.TRUST_PROXY_HOPS),
      cookies: [],
      // A HEAD sends no body: a notice that never comes (not "unknown", which would make a body be streamed for nothing).
      onResponseSent: isHead ? () => {} : connection?.onResponseSent,
    };
    const request = isHead ? new Request(incoming.url, { method: "GET", headers: incoming.headers, signal: incoming.signal }) : incoming;
    let response: Response;
    try {
      response = await withRequestId(state.requestId, () => router.fetch(request as RoutedRequest, state));
    } catch (error) {
      if (isDatabaseUnavailable(error)) services.logDatabaseOutage(error, { request_id: state.requestId });
      else if (!(error instanceof AppError)) {
        services.logger.error("Unhandled error", { request_id: state.requestId, error: errorMessage(error), stack: errorStack(error) });
      }
      response = errorResponse(error, state.requestId);
    }
    let final = response;
    // The response goes out as it is when its headers can take ours: a copy would cost a body stream per request.
    if (isHead || !stampHeaders(response.headers, state.requestId, state.cookies)) {
      const headers = new Headers(response.headers);
      stampHeaders(headers, state.requestId, state.cookies);
      // A HEAD drops the body unread: cancel it so that, e.g., an opened file is closed now.
      if (isHead) await response.body?.cancel().catch(() => {});
      final = new Response(isHead ? null : response.body, { status: response.status, statusText: response.statusText, headers });
    }

    const route = state.route?.path ?? "unmatched";
    const seconds = (performance.now() - started) / 1000;
    services.metrics.httpRequests.inc({ route, method: incoming.method, status: final.status });
    services.metrics.httpDuration.observe({ route, method: incoming.method }, seconds);
    services.logger.info("request", {
      request_id: state.requestId,
      method: incoming.method,
      route,
      status: final.status,
      duration_ms: Math.round(seconds * 10000) / 10,
    });
    return final;
  };
}

/**
 * One route run exactly as the server runs it (auth, input parsing, error envelope, request id) over the services
 * given: how a unit test calls a handler with a plain Request and fake services. Only the edge's services and those
 * the route declares in `uses` are asked for, e.g. `runRoute(listModels, request, { ...edge, models })`.
 */
export function runRoute<U extends ServiceName>(route: Route<U>, request: Request, services: RouteServices<NoInfer<U>>): Promise<Response> {
  return createApp([route], services)(request);
}
