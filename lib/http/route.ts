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

type RouteContext<P = unknown, Q = unknown, B = unknown> = {
  services: Services;
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
 * of these (functions/index.ts), so the docs cannot drift from the code.
 */
export type Route = {
  method: Method;
  /** itty-router pattern, e.g. /api/devices/:id */
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
  handler: (request: Request, ctx: RouteContext<any, any, any>) => Promise<Response>;
};

export function defineRoute<P extends Schema | undefined = undefined, Q extends Schema | undefined = undefined, B extends Schema | undefined = undefined>(
  route: Omit<Route, "request" | "handler"> & {
    request?: { params?: P; query?: Q; body?: B; rawBody?: RawBody };
    handler: (request: Request, ctx: RouteContext<Out<P>, Out<Q>, Out<B>>) => Promise<Response>;
  },
): Route {
  return route as Route;
}

/** A device route and its compatible copy under /api (CONTRACT §3: /iot/... is also served as /api/iot/...). */
export const alsoUnderApi = (route: Route): Route[] => [route, { ...route, path: `/api${route.path}` }];
