import type { z } from "zod";
import type { ZodOpenApiContentObject, ZodOpenApiResponsesObject } from "zod-openapi";
import type { Services } from "../context.ts";
import type { Logger } from "../logger.ts";
import type { ResponseCookies } from "../identity/authenticator.ts";
import type { Access, Principal } from "../identity/principal.ts";

type Method = "GET" | "POST" | "PUT" | "DELETE";

type Schema = z.ZodType;
type RawBody = { description: string; content: ZodOpenApiContentObject };
type Out<S> = S extends Schema ? z.output<S> : undefined;

/** A service of the composition root (lib/context.ts) that a route can declare in `uses`. */
export type ServiceName = Exclude<keyof Services, "close">;

/**
 * What the HTTP edge itself (lib/http/app.ts) uses whatever the route: authentication, the request log and metrics,
 * the database-outage log and the proxy setting. A route's own services come on top of these (Route.uses).
 */
export type EdgeServices = Pick<Services, "config" | "auth" | "logger" | "metrics" | "logDatabaseOutage">;

/** The services a route declaring `uses: U` is given, and all that runRoute needs to run it: the edge's plus its own. */
export type RouteServices<U extends ServiceName> = EdgeServices & Pick<Services, U>;

type RouteContext<P, Q, B, U extends ServiceName> = {
  /** Only the services the route declared in `uses`: touching another one does not compile. */
  services: Pick<Services, U>;
  /** Every route of the app (the OpenAPI document is built from it). */
  routes: Route[];
  logger: Logger;
  principal: Principal;
  /** Where the request came from (TRUST_PROXY_HOPS); null when unknown, e.g. a test calling the app directly. */
  clientAddress: string | null;
  /** Set-Cookie headers that go on this request's response whatever it is (see Authenticator.identify). */
  responseCookies: ResponseCookies;
  /**
   * Calls `listener` once the last byte of this response's body was handed to the connection (never for HEAD, never
   * when the client went away earlier); undefined where the server cannot tell (a test calling the app directly).
   */
  onResponseSent: ((listener: () => void) => void) | undefined;
  params: P;
  query: Q;
  body: B;
};

/**
 * Everything about one endpoint in one value: the router and the OpenAPI document are both built from the list
 * of these (functions/index.ts), so the docs cannot drift from the code. `U` is the services it uses; a Route<"models">
 * is a Route (of all names), since a handler that needs fewer services accepts the whole composition root.
 */
export type Route<U extends ServiceName = ServiceName> = {
  method: Method;
  /** The path, `:name` for a parameter segment, e.g. /api/devices/:id (lib/http/router.ts) */
  path: string;
  access: Access;
  summary: string;
  tags: string[];
  description?: string;
  request?: {
    params?: Schema;
    query?: Schema;
    /** A JSON body is read (size-limited, application/json only) and parsed with this schema. */
    body?: Schema;
    /** Documentation of a body the handler reads itself (e.g. a firmware stream): its media types and their shapes. */
    rawBody?: RawBody;
  };
  responses: ZodOpenApiResponsesObject;
  /** The services of lib/context.ts the handler uses (besides the edge's, EdgeServices); [] for none. */
  uses: readonly U[];
  /** params, query and body are what request.params/query/body parse to (the app parses them; see defineRoute). */
  handler: (request: Request, ctx: RouteContext<unknown, unknown, unknown, U>) => Promise<Response>;
};

/**
 * A route whose handler sees its parsed input and its declared services typed: `uses: ["models"]` gives it
 * `services: Pick<Services, "models">` (the `const` type parameter keeps the names, not string[]).
 */
export function defineRoute<
  const Uses extends readonly ServiceName[],
  P extends Schema | undefined = undefined,
  Q extends Schema | undefined = undefined,
  B extends Schema | undefined = undefined,
>(
  route: Omit<Route, "request" | "handler" | "uses"> & {
    request?: { params?: P; query?: Q; body?: B; rawBody?: RawBody };
    uses: Uses;
    handler: (request: Request, ctx: RouteContext<Out<P>, Out<Q>, Out<B>, Uses[number]>) => Promise<Response>;
  },
): Route<Uses[number]> {
  // The one cast of the route types, where the input types are erased: the handler was typed with what the schemas
  // in `route.request` parse to, and the app parses exactly those schemas before calling it (lib/http/app.ts).
  return route as Route<Uses[number]>;
}

/** A device route and its compatible copy under /api (CONTRACT §3: /iot/... is also served as /api/iot/...). */
export const alsoUnderApi = <U extends ServiceName>(route: Route<U>): Route<U>[] => [route, { ...route, path: `/api${route.path}` }];
