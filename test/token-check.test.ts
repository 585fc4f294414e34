/** lib/identity/tokens.ts: a token that passed is not checked again, but still expires, and a failure is never kept. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type JWTVerifyGetKey } from "jose";
import { AppError } from "../lib/errors.ts";
import { createJwtCheck } from "../lib/identity/tokens.ts";

const ISSUER = "http://issuer.test";
const AUDIENCE = "iot-backend";

async function issuer(alg = "RS256") {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg };
  let keyLookups = 0;
  const localKeys = createLocalJWKSet({ keys: [jwk] });
  // Counts how often a signature is actually checked (jose asks for the key once per check).
  const keys: JWTVerifyGetKey = (header, token) => {
    keyLookups++;
    return localKeys(header, token);
  };
  const mint = (claims: { exp: number; azp?: string }) =>
    new SignJWT({ azp: claims.azp ?? "iotdevice-m-abcdefgh", typ: "Bearer" })
      .setProtectedHeader({ alg, kid: "k1" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(claims.exp)
      .sign(privateKey);
  return { keys, mint, lookups: () => keyLookups };
}

const rejection = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AppError);
    return error;
  }
  assert.fail("the token was accepted");
};

test("a token that passed is not checked again while it is valid, and is refused once it expires", async () => {
  const { keys, mint, lookups } = await issuer();
  const check = createJwtCheck({ keys, issuer: ISSUER, audience: AUDIENCE, clockSkewSeconds: 0 });
  const exp = Math.floor(Date.now() / 1000) + 2;
  const token = await mint({ exp });

  const first = await check(token);
  for (let i = 0; i < 20; i++) assert.deepEqual(await check(token), first);
  assert.equal(lookups(), 1, "one signature check for 21 uses");

  await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 50));
  const expired = await rejection(check(token));
  assert.equal(expired.status, 401);
  assert.equal(expired.code, "TOKEN_EXPIRED");
  assert.equal((await rejection(check(token))).code, "TOKEN_EXPIRED", "and stays refused");
});

test("a refused token is checked again every time, never remembered", async () => {
  const { keys, mint, lookups } = await issuer();
  const check = createJwtCheck({ keys, issuer: ISSUER, audience: AUDIENCE, clockSkewSeconds: 0 });
  const good = await mint({ exp: Math.floor(Date.now() / 1000) + 300 });
  const [head, body, signature] = good.split(".") as [string, string, string];
  const tampered = `${head}.${body}.${signature.slice(0, -4)}${signature.endsWith("AAAA") ? "BBBB" : "AAAA"}`;
  for (let i = 0; i < 3; i++) assert.equal((await rejection(check(tampered))).code, "INVALID_TOKEN");
  assert.equal(lookups(), 3);
  await check(good);
  assert.equal((await rejection(check(tampered))).code, "INVALID_TOKEN", "a valid token passing changes nothing for a forged one");
});

test("the leeway applies to remembered tokens as it does to new ones", async () => {
  const { keys, mint } = await issuer();
  const check = createJwtCheck({ keys, issuer: ISSUER, audience: AUDIENCE, clockSkewSeconds: 30 });
  const recentlyExpired = await mint({ exp: Math.floor(Date.now() / 1000) - 5 });
  assert.ok(await check(recentlyExpired), "5 s past exp, inside 30 s of leeway");
  assert.ok(await check(recentlyExpired), "again, remembered");
  const longExpired = await mint({ exp: Math.floor(Date.now() / 1000) - 60 });
  assert.equal((await rejection(check(longExpired))).code, "TOKEN_EXPIRED");
});

test("at most 4096 tokens are remembered: the oldest is checked again, the newest is not", async () => {
  const { keys, mint, lookups } = await issuer("ES256"); // fast to sign thousands
  const check = createJwtCheck({ keys, issuer: ISSUER, audience: AUDIENCE, clockSkewSeconds: 0 });
  const exp = Math.floor(Date.now() / 1000) + 300;
  const tokens = await Promise.all(Array.from({ length: 4097 }, (_, i) => mint({ exp, azp: `iotdevice-m-${String(i).padStart(8, "0")}` })));
  for (const token of tokens) await check(token);
  assert.equal(lookups(), 4097);
  await check(tokens.at(-1)!);
  assert.equal(lookups(), 4097, "the newest is still remembered");
  await check(tokens[0]!);
  assert.equal(lookups(), 4098, "the oldest was let go when the 4097th arrived");
});
