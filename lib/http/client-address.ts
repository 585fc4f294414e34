import { isIP } from "node:net";
import { unmapped } from "../ip-address.ts";

/** What server.ts knows of the connection a request came on. */
export type Connection = {
  remoteAddress: string | null;
  /**
   * Calls `listener` once the last byte of this request's response was handed to the operating system (node:http's
   * 'finish'); never when the connection closed earlier. Absent where the server cannot tell (a test calling the app).
   */
  onResponseSent?: (listener: () => void) => void;
};

/**
 * The address a request came from: the connection's peer or, behind `trustedHops` reverse proxies, the address the
 * outermost of them saw. Each proxy appends its peer to X-Forwarded-For, so that entry is read from the right;
 * entries further left are whatever the client chose to send.
 */
export function clientAddress(request: Request, peer: string | null, trustedHops: number): string | null {
  let address = peer;
  if (trustedHops > 0) {
    const forwarded = (request.headers.get("x-forwarded-for") ?? "").split(",").map((entry) => entry.trim()).filter(Boolean);
    const seen = forwarded.at(-trustedHops) ?? forwarded[0];
    if (seen && isIP(seen)) address = seen;
  }
  return address === null ? null : unmapped(address);
}
