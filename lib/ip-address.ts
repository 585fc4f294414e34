import { isIP } from "node:net";

/** An IPv4 address written as IPv6 (`::ffff:1.2.3.4`) as the plain IPv4 address. */
export const unmapped = (address: string) => address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");

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
