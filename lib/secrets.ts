import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Fernet (the spec used by Python's cryptography package), so secrets written here can be read by other tools
 * holding the same SECRET_ENCRYPTION_KEY. Several comma-separated keys are accepted: the first encrypts, any
 * decrypts (key rotation without re-encrypting everything at once).
 */
export type SecretBox = {
  encrypt(plaintext: string): string;
  /** Throws SecretKeyMismatch when no configured key can read the token. */
  decrypt(token: string): string;
};

const sha256 = (text: string) => createHash("sha256").update(text).digest();

/** A new random secret (192 bits, URL-safe): device client secrets, the generated admin token. */
export const randomSecret = () => randomBytes(24).toString("base64url");

/** Compares two secrets in constant time; digests first, so not even their lengths show. */
export const sameSecret = (a: string, b: string) => timingSafeEqual(sha256(a), sha256(b));

export class SecretKeyMismatch extends Error {
  constructor() {
    super("The stored secret cannot be decrypted with SECRET_ENCRYPTION_KEY (was the key changed?)");
  }
}

const VERSION = 0x80;

const paddedBase64Url = (bytes: Buffer) => {
  const text = bytes.toString("base64url");
  return text + "=".repeat((4 - (text.length % 4)) % 4);
};

export function generateFernetKey(): string {
  return paddedBase64Url(randomBytes(32));
}

export function createSecretBox(keys: string): SecretBox {
  const parsed = keys.split(",").map((key) => {
    const bytes = Buffer.from(key.trim(), "base64url");
    if (bytes.length !== 32) throw new Error("SECRET_ENCRYPTION_KEY must be 32 url-safe base64 bytes (a Fernet key)");
    return { signing: bytes.subarray(0, 16), encryption: bytes.subarray(16) };
  });
  const [current] = parsed;
  if (!current) throw new Error("SECRET_ENCRYPTION_KEY is empty");

  return {
    encrypt(plaintext) {
      const iv = randomBytes(16);
      const header = Buffer.alloc(9);
      header[0] = VERSION;
      header.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000)), 1);
      const cipher = createCipheriv("aes-128-cbc", current.encryption, iv);
      const body = Buffer.concat([header, iv, cipher.update(plaintext, "utf8"), cipher.final()]);
      const mac = createHmac("sha256", current.signing).update(body).digest();
      return paddedBase64Url(Buffer.concat([body, mac]));
    },
    decrypt(token) {
      const data = Buffer.from(token.replace(/=+$/, ""), "base64url");
      if (data.length < 9 + 16 + 16 + 32 || data[0] !== VERSION) throw new SecretKeyMismatch();
      const body = data.subarray(0, data.length - 32);
      const mac = data.subarray(data.length - 32);
      for (const key of parsed) {
        const expected = createHmac("sha256", key.signing).update(body).digest();
        if (!timingSafeEqual(expected, mac)) continue;
        const decipher = createDecipheriv("aes-128-cbc", key.encryption, body.subarray(9, 25));
        return Buffer.concat([decipher.update(body.subarray(25)), decipher.final()]).toString("utf8");
      }
      throw new SecretKeyMismatch();
    },
  };
}
