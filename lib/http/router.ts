import type { Route } from "./route.ts";

/** What a request's method and path lead to: a route and its path parameters, a 405 (the methods the path has), or nothing. */
export type RouteMatch =
  | { route: Route; params: Record<string, string> }
  | { route: null; allowed: string[] }
  | null;

type Pattern = { segments: string[]; methods: Map<string, Route> };

/** One segment of a pattern: a literal, or `:name` (a non-empty segment, given as it was sent: not decoded). */
const paramName = (segment: string) => (segment.startsWith(":") ? segment.slice(1) : null);

const splitPath = (path: string) => path.split("/").slice(1);

/**
 * The route table: a path without parameters is one map lookup, one with parameters is compared segment by segment
 * with the patterns of as many segments. Trailing slashes are ignored; a literal pattern wins over one with parameters.
 * No regular expression and no URL object per request: the request path is split once.
 */
export function createRouter(routes: Route[]) {
  const literal = new Map<string, Pattern>();
  const withParams = new Map<number, Pattern[]>();
  for (const route of routes) {
    const path = route.path.replace(/\/+$/, "") || "/";
    const segments = splitPath(path);
    const isLiteral = segments.every((segment) => paramName(segment) === null);
    const candidates = isLiteral ? [literal.get(path)].filter((found) => found !== undefined) : (withParams.get(segments.length) ?? []);
    let pattern = candidates.find((found) => found.segments.join("/") === segments.join("/"));
    if (!pattern) {
      pattern = { segments, methods: new Map() };
      if (isLiteral) literal.set(path, pattern);
      else withParams.set(segments.length, [...candidates, pattern]);
    }
    if (pattern.methods.has(route.method)) throw new Error(`Two routes for ${route.method} ${route.path}`);
    pattern.methods.set(route.method, route);
  }

  /** Every pattern the path fits, the literal one first, with the parameters it gives. */
  function* fitting(path: string): Generator<{ pattern: Pattern; params: Record<string, string> }> {
    const literalPattern = literal.get(path);
    if (literalPattern) yield { pattern: literalPattern, params: {} };
    const segments = splitPath(path);
    for (const pattern of withParams.get(segments.length) ?? []) {
      const params: Record<string, string> = {};
      const fits = pattern.segments.every((expected, index) => {
        const given = segments[index]!;
        const name = paramName(expected);
        if (name === null) return given === expected;
        params[name] = given;
        return given !== "";
      });
      if (fits) yield { pattern, params };
    }
  }

  return {
    /** `pathname` as sent (percent-encoded), without the query. */
    match(method: string, pathname: string): RouteMatch {
      const path = pathname.length > 1 && pathname.endsWith("/") ? pathname.replace(/\/+$/, "") || "/" : pathname;
      // The common case, a literal path with its method (every device request), without the generator.
      const route = literal.get(path)?.methods.get(method);
      if (route) return { route, params: {} };
      const allowed = new Set<string>();
      for (const { pattern, params } of fitting(path)) {
        const route = pattern.methods.get(method);
        if (route) return { route, params };
        for (const other of pattern.methods.keys()) allowed.add(other);
      }
      if (allowed.size === 0) return null;
      // GET also answers HEAD (lib/http/app.ts), so the 405 and its Allow header name it.
      if (allowed.has("GET")) allowed.add("HEAD");
      return { route: null, allowed: [...allowed] };
    },
  };
}
