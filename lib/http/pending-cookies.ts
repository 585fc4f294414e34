/**
 * Set-Cookie headers decided before the handler runs (the authenticator refreshing an expired session cookie),
 * kept per request and appended to that request's response by the app, whatever the handler returns or throws.
 */
const pending = new WeakMap<Request, string[]>();

export function addResponseCookies(request: Request, cookies: string[]): void {
  pending.set(request, [...(pending.get(request) ?? []), ...cookies]);
}

export function takeResponseCookies(request: Request): string[] {
  const cookies = pending.get(request) ?? [];
  pending.delete(request);
  return cookies;
}
