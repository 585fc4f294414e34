import { createHash } from "node:crypto";
import { createFailureBudget } from "../failure-budget.ts";
import { addressBlock } from "../http/client-address.ts";
import { oauthError } from "../http/errors.ts";
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
 * right secret never fails. Once a client's budget is spent it is refused before its secret is checked, so one
 * device stuck on a stale secret adds at most the drain rate of its own budget to its address's.
 * An unknown client_id counts exactly like a known one, so the limits do not tell which clients exist.
 */
export function createClientAuthLimits(settings: ClientAuthLimitSettings, logger: Logger) {
  const byClient = createFailureBudget({ limit: settings.perClient, windowSeconds: settings.windowSeconds, maxKeys: MAX_KEYS });
  const byAddress = createFailureBudget({ limit: settings.perAddress, windowSeconds: settings.windowSeconds, maxKeys: MAX_KEYS });
  // Hashed: a client_id may be as long as the form allows (64 KiB), and keys are kept in memory.
  const clientKey = (clientId: string) => createHash("sha256").update(clientId).digest("base64url");

  return {
    /** 429 (with Retry-After) while the client or the address has spent its budget. */
    assertAllowed({ clientId, address }: ClientAuthAttempt): void {
      const wait = Math.max(byClient.waitSeconds(clientKey(clientId)), address ? byAddress.waitSeconds(addressBlock(address)) : 0);
      if (wait > 0) throw tooManyFailures(wait);
    },

    failed({ clientId, address }: ClientAuthAttempt): void {
      const clientSpent = byClient.spend(clientKey(clientId));
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
