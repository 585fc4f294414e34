import { createHash } from "node:crypto";
import { createFailureBudget } from "../failure-budget.ts";
import { addressBlock } from "../ip-address.ts";
import { oauthError } from "../errors.ts";
import type { Logger } from "../logger.ts";

/** Keys remembered per budget: about 200 bytes each, so a few MiB at most. */
const MAX_KEYS = 10_000;

type ClientAuthLimitSettings = { perClient: number; perAddress: number; windowSeconds: number };
type ClientAuthAttempt = { clientId: string; address: string | null };

const tooManyFailures = (seconds: number) =>
  oauthError(429, "temporarily_unavailable", `Too many failed attempts to authenticate; try again in ${seconds} seconds.`, {
    code: "TOO_MANY_FAILED_ATTEMPTS",
    details: { retry_after_seconds: seconds },
    headers: { "retry-after": String(seconds) },
  });

/**
 * Failure budgets of the built-in token endpoint, per client_id and per source address. Only failed client
 * authentications count: devices fetch tokens often and hundreds may share one NAT address, but a device with its
 * right secret never fails. A spent address budget refuses every request from there before any secret is checked.
 * A spent client budget refuses only wrong secrets: whoever merely knows a device's client_id must not be able to
 * keep the device from its tokens (its secret is far too long to guess anyway). Refused attempts count nothing,
 * so one device stuck on a stale secret adds at most the drain rate of its own budget to its address's.
 * An unknown client_id counts exactly like a known one, so the limits do not tell which clients exist.
 */
export function createClientAuthLimits(settings: ClientAuthLimitSettings, logger: Logger) {
  const byClient = createFailureBudget({ limit: settings.perClient, windowSeconds: settings.windowSeconds, maxKeys: MAX_KEYS });
  const byAddress = createFailureBudget({ limit: settings.perAddress, windowSeconds: settings.windowSeconds, maxKeys: MAX_KEYS });
  // Hashed: a client_id may be as long as the form allows (64 KiB), and keys are kept in memory.
  const clientKey = (clientId: string) => createHash("sha256").update(clientId).digest("base64url");

  return {
    /** 429 (with Retry-After) while the address has spent its budget. */
    assertAddressAllowed(address: string | null): void {
      const wait = address ? byAddress.waitSeconds(addressBlock(address)) : 0;
      if (wait > 0) throw tooManyFailures(wait);
    },

    /** Counts a failed authentication; 429 instead (counting nothing) while the client has spent its budget. */
    failed({ clientId, address }: ClientAuthAttempt): void {
      const key = clientKey(clientId);
      const wait = byClient.waitSeconds(key);
      if (wait > 0) throw tooManyFailures(wait);
      const clientSpent = byClient.spend(key);
      const addressSpent = address ? byAddress.spend(addressBlock(address)) : false;
      if (clientSpent || addressSpent) {
        logger.warn("Token requests refused for a while after repeated failed client authentications", {
          ...(clientSpent && { client_id: clientId.slice(0, 100) }),
          ...(addressSpent && { address }),
        });
      }
    },
  };
}

export type ClientAuthLimits = ReturnType<typeof createClientAuthLimits>;
