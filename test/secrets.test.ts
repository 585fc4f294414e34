import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createSecretBox, generateFernetKey, randomSecret, sameSecret, SecretKeyMismatch } from "../lib/secrets.ts";

// The test vector of the Fernet specification (github.com/fernet/spec, generate.json / verify.json).
const SPEC_KEY = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
const SPEC_TOKEN = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";

describe("Fernet secret box", () => {
  test("decrypts the specification's test vector", () => {
    assert.equal(createSecretBox(SPEC_KEY).decrypt(SPEC_TOKEN), "hello");
  });

  test("round-trips unicode and produces a fresh token each time", () => {
    const box = createSecretBox(generateFernetKey());
    const text = "Grüße 🔐 секрет — ünïcödé\u0000end";
    const first = box.encrypt(text);
    const second = box.encrypt(text);
    assert.notEqual(first, second, "a random IV per token");
    assert.equal(box.decrypt(first), text);
    assert.equal(box.decrypt(second), text);
    assert.equal(box.decrypt(box.encrypt("")), "");
    assert.match(first, /^gAAAAA[A-Za-z0-9_-]+=*$/, "url-safe base64 starting with the version byte 0x80");
  });

  test("generated keys are valid Fernet keys; malformed keys are refused", () => {
    const key = generateFernetKey();
    assert.doesNotThrow(() => createSecretBox(key));
    assert.equal(Buffer.from(key, "base64url").length, 32);
    assert.throws(() => createSecretBox("too-short"), /32/);
    assert.throws(() => createSecretBox(""), /SECRET_ENCRYPTION_KEY/);
  });

  test("a token written with another key throws SecretKeyMismatch", () => {
    const token = createSecretBox(generateFernetKey()).encrypt("device secret");
    assert.throws(() => createSecretBox(generateFernetKey()).decrypt(token), SecretKeyMismatch);
  });

  test("a tampered token throws", () => {
    const box = createSecretBox(generateFernetKey());
    const token = box.encrypt("device secret");
    const bytes = Buffer.from(token, "base64url");
    for (const position of [0, 5, 20, 40, bytes.length - 1]) {
      const tampered = Buffer.from(bytes);
      tampered[position]! ^= 0x01;
      assert.throws(() => box.decrypt(tampered.toString("base64url")), SecretKeyMismatch, `byte ${position} flipped`);
    }
    assert.throws(() => box.decrypt(token.slice(0, 40)), SecretKeyMismatch, "truncated");
    assert.throws(() => box.decrypt("not a token"), SecretKeyMismatch);
  });

  test("comma-separated keys: the first encrypts, any decrypts (key rotation)", () => {
    const oldKey = generateFernetKey();
    const newKey = generateFernetKey();
    const oldToken = createSecretBox(oldKey).encrypt("written before the rotation");
    const rotated = createSecretBox(`${newKey}, ${oldKey}`);
    assert.equal(rotated.decrypt(oldToken), "written before the rotation");
    const fresh = rotated.encrypt("written after");
    assert.equal(createSecretBox(newKey).decrypt(fresh), "written after", "encrypted with the first key");
    assert.throws(() => createSecretBox(oldKey).decrypt(fresh), SecretKeyMismatch);
  });

  test("secrets compare by content, whatever their lengths, and new ones are random", () => {
    const secret = randomSecret();
    assert.equal(sameSecret(secret, `${secret}`), true);
    assert.equal(sameSecret(secret, secret.slice(0, -1)), false);
    assert.equal(sameSecret(secret, `${secret}x`), false);
    assert.equal(sameSecret("", secret), false);
    assert.notEqual(randomSecret(), secret);
    assert.match(secret, /^[A-Za-z0-9_-]{32}$/);
  });
});
