import type { DevicePrincipal, TokenVerifier } from "../identity/principal.ts";
import type { DeviceStateService } from "./service.ts";

/** Every authenticated device request is noted (last_seen_at, report headers); the request never waits for it. */
export function observingDevices(verify: TokenVerifier<DevicePrincipal>, state: Pick<DeviceStateService, "seen">): TokenVerifier<DevicePrincipal> {
  return async (token, request) => {
    const principal = await verify(token, request);
    // Without a request (an MQTT sign-in) there are no report headers; the device was seen all the same.
    state.seen(principal, request?.headers ?? new Headers());
    return principal;
  };
}
