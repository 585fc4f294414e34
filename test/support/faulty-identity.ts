import { upstreamUnavailable } from "../../lib/errors.ts";
import type { IdentityProvider } from "../../lib/identity/provider.ts";

export type Fault = { operation: keyof IdentityProvider; when: "before" | "after" } | null;

/**
 * Wraps a real provider so one operation fails as a network fault would: "before" (the request never arrived) or
 * "after" (the provider applied it, but the answer was lost).
 */
export function faultyIdentity(): { wrap(real: IdentityProvider): IdentityProvider; set(fault: Fault): void; hits: () => number } {
  let fault: Fault = null;
  let hits = 0;
  return {
    set: (next) => {
      fault = next;
      hits = 0;
    },
    hits: () => hits,
    wrap: (real) =>
      new Proxy(real, {
        get(target, property, receiver) {
          const value = Reflect.get(target, property, receiver);
          if (typeof value !== "function") return value;
          return async (...args: unknown[]) => {
            const failing = fault?.operation === property ? fault.when : null;
            if (failing === "before") {
              hits++;
              throw upstreamUnavailable("keycloak", "Keycloak is not reachable.");
            }
            const result = await value.apply(target, args);
            if (failing === "after") {
              hits++;
              throw upstreamUnavailable("keycloak", "The connection to Keycloak was lost.");
            }
            return result;
          };
        },
      }),
  };
}
