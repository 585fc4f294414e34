/**
 * What the backend needs from an identity provider for device clients. Implemented by the built-in provider
 * (lib/identity/builtin.ts) and by Keycloak (lib/identity/keycloak.ts); both pass the same contract tests.
 *
 * Failures: a client that does not exist throws clientNotFound (404 CLIENT_NOT_FOUND), an upstream that answers
 * with an error upstreamError (502), one that cannot be reached upstreamUnavailable (503). Methods never log or
 * embed secrets in error messages.
 */
import { AppError, notFound } from "../errors.ts";

/** `iotdevice-<model code>-<device key>` (CONTRACT §2): the client ids of devices and of nothing else. */
export const DEVICE_CLIENT_ID = /^iotdevice-[a-z0-9_]+-[a-z0-9]{8}$/;

export const clientNotFound = (clientId: string) => notFound(`There is no OAuth2 client ${clientId}.`, "CLIENT_NOT_FOUND");

/** Whether `error` says the client does not exist (the same for every provider). */
export const isClientNotFound = (error: unknown) => error instanceof AppError && error.code === "CLIENT_NOT_FOUND";

export type ClientStatus = {
  exists: boolean;
  /** The provider's own id for the client (Keycloak's UUID); null when it does not exist. */
  externalId: string | null;
  /** Where an admin can look at the client; null when the provider has no console. */
  consoleUrl: string | null;
};

/**
 * A new secret from rotateSecret: the provider's number for it (null where the provider does not number them), and
 * until when the secret it replaced keeps working.
 */
export type RotatedSecret = { secret: string; generation: number | null; previousValidUntil: Date };

export interface IdentityProvider {
  readonly kind: "builtin" | "keycloak";
  /**
   * Whether rotateSecret keeps the previous secret working for a while (Keycloak: only with its secret-rotation
   * policy). Without that, a device that missed the new secret would be locked out, so the rotation engine keeps a
   * restore point and restores it on timeout.
   */
  keepsPreviousSecret(): Promise<boolean>;
  /** The provider's OAuth2 token endpoint. */
  readonly tokenUrl: string;
  /**
   * The `token_url` of the provisioning package: where the backend must see the device's token requests to learn that
   * it holds its new secret (Keycloak with rotation: the backend's pass-through), else tokenUrl.
   */
  deviceTokenUrl(): Promise<string>;
  /** Creates a confidential, client-credentials-only client and returns its initial secret. Fails if it exists. */
  createClient(clientId: string): Promise<{ externalId: string; secret: string }>;
  /** The client ids of every device client the provider holds (DEVICE_CLIENT_ID), with or without a device row. */
  listClientIds(): Promise<string[]>;
  /** Deletes the client; deleting a client that does not exist is not an error. */
  deleteClient(clientId: string): Promise<void>;
  /** The client's current secret. Throws clientNotFound when the client does not exist. */
  getSecret(clientId: string): Promise<string>;
  /** Generates, stores and returns a new secret; the old one stops working. */
  regenerateSecret(clientId: string): Promise<string>;
  /**
   * Makes a new secret current; the one it replaces keeps working until `previousValidUntil`, or until the provider's
   * own policy says (Keycloak), which the result reports. Only where keepsPreviousSecret. A previous secret this
   * provider keeps that the caller does not know of is a rotation it did not record (it died in between): Keycloak
   * hands that rotation's secret out again rather than rotating once more, which would end the one the device holds.
   */
  rotateSecret(clientId: string, previousValidUntil: Date): Promise<RotatedSecret>;
  /** Ends the previous secret's grace now (the device proved it holds the current one). Nothing kept: no-op. */
  retirePreviousSecret(clientId: string): Promise<void>;
  /** Sets a specific secret (used to restore the previous one when a rotation times out). */
  setSecret(clientId: string, secret: string): Promise<void>;
  status(clientId: string): Promise<ClientStatus>;
  /**
   * Repairs the client's settings (enabled, confidential, service accounts only, device scope) keeping its secret;
   * creates it when missing, with a new secret (`created: true`), which the device does not hold yet.
   */
  ensureClient(clientId: string): Promise<{ created: boolean }>;
}
