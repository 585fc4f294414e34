import type { DevicePrincipal, TokenVerifier } from "../identity/principal.ts";
import type { RotationEngine } from "./engine.ts";

/**
 * Every authenticated device request is a chance to complete the device's rotation: deployed firmware uses its new
 * secret for whatever it calls first after its restart, and never says so otherwise (CONTRACT §10). Costs nothing
 * unless the device's row says a new secret was issued.
 */
export function completingRotations(verify: TokenVerifier<DevicePrincipal>, engine: Pick<RotationEngine, "acknowledge">): TokenVerifier<DevicePrincipal> {
  return async (token, request) => {
    const principal = await verify(token, request);
    return { ...principal, rotationCompleted: await engine.acknowledge(principal) };
  };
}
