import { isIP } from "node:net";

/** What server.ts knows of the connection a request came on. */
export type Connection = { remoteAddress: string | null };

const unmapped = (address: string) => address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");

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

/**
 * The block of addresses one client holds: an IPv4 address itself, the /64 of an IPv6 address (a single host is
 * usually given a whole /64, so counting per IPv6 address would let it change addresses at will).
 */
export function addressBlock(address: string): string {
  const plain = unmapped(address);
  if (isIP(plain) !== 6) return plain;
  // The URL parser writes an IPv6 address in its canonical form, hex groups only, "::" for the longest zero run.
  const withoutZone = plain.split("%")[0]!;
  const canonical = new URL(`http://[${withoutZone}]`).hostname.slice(1, -1);
  const [head = "", tail] = canonical.split("::");
  const groups = head ? head.split(":") : [];
  if (tail !== undefined) {
    const rest = tail ? tail.split(":") : [];
    groups.push(...Array<string>(8 - groups.length - rest.length).fill("0"), ...rest);
  }
  return `${groups.slice(0, 4).join(":")}::/64`;
}
