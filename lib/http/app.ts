import { randomUUID } from "node:crypto";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { errorMessage, errorStack, requestLogger, withRequestId } from "../logger.ts";
import { readJsonBody } from "./body.ts";
import { clientAddress, type Connection } from "./client-address.ts";
import { AppError, notFound } from "../errors.ts";
import { errorResponse } from "./respond.ts";
import type { Route, RouteServices, ServiceName } from "./route.ts";
import { createRouter } from "./router.ts";
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

const SAFE_REQUEST_ID = /^[\w.:-]{1,128}$/;
const pickRequestId = (request: Request) => {
  const given = request.headers.get("x-request-id");
  return given && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
};

const methodNotAllowed = (allowed: string[]) =>
  new AppError(405, "METHOD_NOT_ALLOWED", `This URL accepts only ${allowed.join(", ")}.`, { allowed }, { allow: allowed.join(", ") });

/** The path and the query of a request URL, as sent (no URL object: most requests need neither parsed). */
function pathAndQuery(url: string): { path: string; query: string } {
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  if (pathStart < 0) return { path: "/", query: "" };
  const end = url.indexOf("#", pathStart);
  const target = end < 0 ? url.slice(pathStart) : url.slice(pathStart, end);
  const queryStart = target.indexOf("?");
  return queryStart < 0 ? { path: target, query: "" } : { path: target.slice(0, queryStart), query: target.slice(queryStart + 1) };
}

/** A response and the headers the edge adds to it (the request id, cookies set while authenticating), kept apart. */
export type Dispatched = { response: Response; headers: string[] };

/**
 * The fetch handler's core: route, auth, input parsing, the error envelope, logs, metrics. Its answer leaves the
 * edge's headers beside the response, so the Node adapter (./node-adapter.ts) writes both without copying either;
 * createApp stamps them on for everyone else. `services` is what the edge uses plus what the routes use.
 */
export function createDispatcher<U extends ServiceName>(
  routes: Route<U>[],
  services: RouteServices<NoInfer<U>>,
): (request: Request, connection?: Connection) => Promise<Dispatched> {
  const router = createRouter(routes as Route[]);

  async function run(request: Request, state: RequestState, route: Route<U>, pathParams: Record<string, string>, search: string): Promise<Response> {
    const principal = await services.auth.authenticate(request, route.access, state.cookies);
    const { params, query, body } = route.request ?? {};
    return route.handler(request, {
      services,
      routes,
      logger: requestLogger(services.logger, state.requestId),
      principal,
      clientAddress: state.clientAddress,
      responseCookies: state.cookies,
      onResponseSent: state.onResponseSent,
      params: params ? parseParams(params, pathParams) : undefined,
      query: query ? parseInput(query, queryParams(search)) : undefined,
      body: body ? parseInput(body, await readJsonBody(request)) : undefined,
    });
  }

  /** The route's answer; every line a service logs meanwhile carries the request id, except on the device routes (withRequestId). */
  function answer(request: Request, state: RequestState): Promise<Response> {
    const { path, query: search } = pathAndQuery(request.url);
    // A HEAD is answered by the GET route (its body dropped by whoever sends the response).
    const matched = router.match(request.method === "HEAD" ? "GET" : request.method, path);
    if (!matched) throw notFound("There is no such endpoint.", "ROUTE_NOT_FOUND");
    if (!matched.route) throw methodNotAllowed(matched.allowed);
    const found = matched.route as Route<U>;
    state.route = found;
    const work = () => run(request, state, found, matched.params, search);
    return found.access === "device" ? work() : withRequestId(state.requestId, work);
  }

  return async function dispatch(incoming: Request, connection?: Connection): Promise<Dispatched> {
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
    let response: Response;
    try {
      response = await answer(incoming, state);
    } catch (error) {
      if (isDatabaseUnavailable(error)) services.logDatabaseOutage(error, { request_id: state.requestId });
      else if (!(error instanceof AppError)) {
        services.logger.error("Unhandled error", { request_id: state.requestId, error: errorMessage(error), stack: errorStack(error) });
      }
      response = errorResponse(error, state.requestId);
    }

    const route = state.route?.path ?? "unmatched";
    const seconds = (performance.now() - started) / 1000;
    services.metrics.httpRequests.inc({ route, method: incoming.method, status: response.status });
    services.metrics.httpDuration.observe({ route, method: incoming.method }, seconds);
    services.logger.info("request", {
      request_id: state.requestId,
      method: incoming.method,
      route,
      status: response.status,
      duration_ms: Math.round(seconds * 10000) / 10,
    });
    const headers = ["x-request-id", state.requestId];
    for (const cookie of state.cookies) headers.push("set-cookie", cookie);
    return { response, headers };
  };
}

/**
 * The fetch handler: a Request in, a Response out (with the request id and any cookies among its headers), whatever
 * runs it: the Node server goes through ./node-adapter.ts, tests and Bun call this.
 */
export function createApp<U extends ServiceName>(
  routes: Route<U>[],
  services: RouteServices<NoInfer<U>>,
): (request: Request, connection?: Connection) => Promise<Response> {
  const dispatch = createDispatcher(routes, services);
  return async (request, connection) => {
    const { response, headers } = await dispatch(request, connection);
    const isHead = request.method === "HEAD";
    // The response goes out as it is when its headers can take ours: a copy would cost a body stream.
    if (!isHead && addHeaders(response.headers, headers)) return response;
    const copied = new Headers(response.headers);
    addHeaders(copied, headers);
    // A HEAD drops the body unread: cancel it so that, e.g., an opened file is closed now.
    if (isHead) await response.body?.cancel().catch(() => {});
    return new Response(isHead ? null : response.body, { status: response.status, statusText: response.statusText, headers: copied });
  };
}

/** Appends name/value pairs; false when the headers are immutable (e.g. a fetch() result), which then need a copy. */
function addHeaders(target: Headers, pairs: string[]): boolean {
  try {
    for (let index = 0; index < pairs.length; index += 2) target.append(pairs[index]!, pairs[index + 1]!);
  } catch {
    return false;
  }
  return true;
}

/**
 * One route run exactly as the server runs it (auth, input parsing, error envelope, request id) over the services
 * given: how a unit test calls a handler with a plain Request and fake services. Only the edge's services and those
 * the route declares in `uses` are asked for, e.g. `runRoute(listModels, request, { ...edge, models })`.
 */
export function runRoute<U extends ServiceName>(route: Route<U>, request: Request, services: RouteServices<NoInfer<U>>): Promise<Response> {
  return createApp([route], services)(request);
}
