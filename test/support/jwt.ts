/** A JWT that only looks right: any header and claims, a made-up signature (for tokens that must be refused). */
export function unsignedJwt(claims: object, header: object = { alg: "RS256", typ: "JWT" }): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part(header)}.${part(claims)}.c2lnbmF0dXJl`;
}
