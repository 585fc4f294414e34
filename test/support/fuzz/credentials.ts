/** The Authorization header and cookies of a fuzzed request: right, missing, of the wrong kind, or broken. */
import fc from "fast-check";
import type { Access } from "../../../lib/identity/principal.ts";
import { unsignedJwt } from "../jwt.ts";
import { PROTOTYPE_NAMES, headerJunk, mostly } from "./values.ts";

export type Tokens = { admin: string; device: string };
type Kind = "admin" | "device" | "none" | "broken";
type Credentials = { kind: Kind; authorization?: string; cookie?: string };

function authorization(tokens: Tokens, access: Access): fc.Arbitrary<{ kind: Kind; authorization?: string }> {
  const { admin, device } = tokens;
  const broken = [
    "", "Bearer", "Bearer ", `Bearer ${admin}x`, `Bearer ${admin.slice(0, -1)}`, `Bearer ${admin} ${admin}`, `Bearer ${admin}, Bearer ${admin}`,
    `Basic ${Buffer.from(`admin:${admin}`).toString("base64")}`, admin, `Token ${admin}`, `Bearer "${admin}"`, `Bearer ${device.slice(0, -2)}`,
    `Bearer ${device}.x`, `Bearer ${unsignedJwt({ sub: "x", roles: ["admin"], exp: 4102444800 })}`, `Bearer ${unsignedJwt({ sub: "x" }, { alg: "none" })}`,
  ];
  const kinds = {
    admin: fc.constantFrom(`Bearer ${admin}`, `bearer ${admin}`).map((value) => ({ kind: "admin" as const, authorization: value })),
    device: fc.constant({ kind: "device" as const, authorization: `Bearer ${device}` }),
    none: fc.constant({ kind: "none" as const }),
    broken: fc
      .oneof(fc.constantFrom(...broken), headerJunk, headerJunk.map((junk) => `Bearer ${junk}`))
      .map((value) => ({ kind: "broken" as const, authorization: value })),
  };
  if (access === "public") return fc.oneof({ withCrossShrink: true }, kinds.none, kinds.admin, kinds.device, kinds.broken);
  const { [access]: right, ...wrong } = kinds;
  return mostly<{ kind: Kind; authorization?: string }>(right, ...Object.values(wrong));
}

const cookieName = fc.constantFrom("iot_access_token", "iot_refresh_token", "iot_id_token", "iot_login_x", "", ...PROTOTYPE_NAMES);
const cookieValue = fc.oneof(fc.constantFrom("", "%", "%E0%A4%A", '"', '""', "a=b", "deleted", unsignedJwt({ sub: "x", roles: ["admin"] })), headerJunk);

/** Cookie headers that never carry a valid session: the fuzzer has none. */
const cookie = fc.oneof(
  fc.array(fc.tuple(cookieName, cookieValue), { minLength: 1, maxLength: 4 }).map((pairs) => pairs.map(([name, value]) => `${name}=${value}`).join("; ")),
  fc.constantFrom("=", ";;", "iot_access_token", "iot_access_token=; iot_access_token=x", " ; = ; "),
  headerJunk,
);

export const credentialsArb = (tokens: Tokens, access: Access): fc.Arbitrary<Credentials> =>
  fc
    .tuple(authorization(tokens, access), mostly(fc.constant(undefined), cookie))
    .map(([auth, cookieHeader]) => ({ ...auth, ...(cookieHeader !== undefined && { cookie: cookieHeader }) }));

/** A route for admins or devices must refuse anything but its own kind of token. */
export function credentialFaults(access: Access, { kind }: Credentials): string[] {
  if (access === "public" || kind === access) return [];
  return [kind === "none" ? "no credentials" : kind === "broken" ? "broken credentials" : `a ${kind} token on a ${access} route`];
}
