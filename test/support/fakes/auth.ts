/**
 * The real authenticator over fake token checks: the static admin token, a signed-in user without the admin role,
 * and device tokens that stand for a client-credentials grant (`<client id>.<secret>`, checked by the fake provider).
 */
import { type Authenticator, createAuthenticator, type ResponseCookies } from "../../../lib/identity/authenticator.ts";
import type { AdminIdentity, DevicePrincipal } from "../../../lib/identity/principal.ts";
import { unauthorized } from "../../../lib/errors.ts";
import { observingDevices } from "../../../lib/device-state/observing.ts";
import type { DeviceStateService } from "../../../lib/device-state/service.ts";
import { completingRotations } from "../../../lib/rotation/completion.ts";
import type { RotationEngine } from "../../../lib/rotation/engine.ts";
import { ADMIN_TOKEN } from "../tokens.ts";
import type { FakeIdentityProvider } from "./identity.ts";
import type { FakeWorld } from "./world.ts";

export const NON_ADMIN_TOKEN = "signed-in-without-admin-role";
const NON_ADMIN: AdminIdentity = { kind: "admin", subject: "user-1", email: "user@example.test", name: "Plain User", roles: ["user"] };

/** A device token for these credentials; it is refused once the secret no longer works. */
export const deviceToken = (clientId: string, secret: string) => `${clientId}.${secret}`;

const invalidToken = () => unauthorized("The bearer token is not valid.", "INVALID_TOKEN");

export function fakeAuth(options: {
  world: FakeWorld;
  identity: FakeIdentityProvider;
  engine: Pick<RotationEngine, "acknowledge">;
  deviceState: Pick<DeviceStateService, "seen">;
  authDisabled: boolean;
  adminTokenFromRequest?: (request: Request, responseCookies: ResponseCookies) => Promise<string | null>;
  sessionFromRequest?: (request: Request) => AdminIdentity | null;
}): Authenticator {
  const { world, identity } = options;

  async function verifyDeviceToken(token: string): Promise<DevicePrincipal> {
    const dot = token.indexOf(".");
    const clientId = token.slice(0, dot);
    const device = [...world.devices.values()].find((row) => row.clientId === clientId);
    const generation = device && dot > 0 ? await identity.generationOf(clientId, token.slice(dot + 1)) : null;
    if (!device || generation === null) throw invalidToken();
    return { kind: "device", device: { ...device }, model: { ...world.models.get(device.deviceModelId)! }, tokenIssuedAt: new Date(), secretGeneration: generation, rotationCompleted: false };
  }

  return createAuthenticator({
    config: { AUTH_DISABLED: options.authDisabled },
    adminApiToken: ADMIN_TOKEN,
    adminTokenFromRequest: options.adminTokenFromRequest,
    sessionFromRequest: options.sessionFromRequest,
    async verifyAdminToken(token) {
      if (token === NON_ADMIN_TOKEN) return NON_ADMIN;
      throw invalidToken();
    },
    verifyDeviceToken: observingDevices(completingRotations(verifyDeviceToken, options.engine), options.deviceState),
  });
}
