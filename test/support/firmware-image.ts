import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { inspectImage } from "../../lib/firmware/image.ts";
import { readFixture } from "./fixtures.ts";

export const readVector = (name: "esp_idf_blink_esp32s2.bin" | "bootloader_esp32.bin") => new Uint8Array(readFixture(`firmware/${name}`));

/**
 * A valid ESP32-S2 application image of about `size` bytes, laid out as esptool writes one: image header
 * (hash appended), a first segment opening with the app descriptor, a second segment of random bytes, zero
 * padding to 16, the XOR checksum byte and the SHA-256 of everything before it. Checked with the inspector.
 */
export function buildImage(options: {
  version: string;
  projectName?: string;
  idfVersion?: string;
  secureVersion?: number;
  elfSha256?: string;
  size: number;
}): Uint8Array<ArrayBuffer> {
  const first = 256;
  const overhead = 24 + 8 + first + 8 + 16 + 32;
  const second = Math.max(0, Math.floor((options.size - overhead) / 4) * 4);
  const body = 24 + 8 + first + 8 + second;
  const padding = 15 - (body % 16);
  const image = new Uint8Array(body + padding + 1 + 32);
  const view = new DataView(image.buffer);

  image.set([0xe9, 2, 2, 0x1f], 0);
  view.setUint32(4, 0x40022000, true); // entry point
  view.setUint16(12, 0x0002, true); // chip id: ESP32-S2
  image[23] = 1; // SHA-256 appended

  view.setUint32(24, 0x3f000020, true);
  view.setUint32(28, first, true);
  const text = (at: number, value: string, length: number) => image.set(Buffer.from(value).subarray(0, length - 1), at);
  view.setUint32(32, 0xabcd5432, true);
  view.setUint32(32 + 4, options.secureVersion ?? 0, true);
  text(32 + 16, options.version, 32);
  text(32 + 48, options.projectName ?? "bench", 32);
  text(32 + 112, options.idfVersion ?? "v5.3", 32);
  if (options.elfSha256) image.set(Buffer.from(options.elfSha256, "hex"), 32 + 144);

  const secondAt = 24 + 8 + first;
  view.setUint32(secondAt, 0x40080000, true);
  view.setUint32(secondAt + 4, second, true);
  image.set(randomBytes(second), secondAt + 8);

  let checksum = 0xef;
  for (const [from, to] of [[32, 32 + first], [secondAt + 8, body]] as const) for (let i = from; i < to; i++) checksum ^= image[i]!;
  image[body + padding] = checksum;
  image.set(createHash("sha256").update(image.subarray(0, image.length - 32)).digest(), image.length - 32);
  inspectImage(image);
  return image;
}

/**
 * `img` signed as espsecure `sign_data --version 2` writes it: 0xFF up to a 4096-byte boundary, then a 4096-byte
 * sector of 1216-byte blocks (magic 0xE7, version, SHA-256 of everything before the sector, key and signature —
 * random here, the device checks them —, CRC-32 of bytes 0–1195), 0xFF after them.
 */
export function signV2(img: Uint8Array, options: { version?: number; blocks?: number; digestOf?: Uint8Array } = {}): Uint8Array {
  const padded = Buffer.concat([img, new Uint8Array((4096 - (img.length % 4096)) % 4096).fill(0xff)]);
  const digestSource = options.digestOf ? signV2(options.digestOf).subarray(0, -4096) : padded;
  const digest = createHash("sha256").update(digestSource).digest();
  const sector = new Uint8Array(4096).fill(0xff);
  for (let slot = 0; slot < (options.blocks ?? 1); slot++) {
    const block = new Uint8Array(1216);
    block.set([0xe7, options.version ?? 2, 0, 0]);
    block.set(digest, 4);
    block.set(randomBytes(1160), 36);
    new DataView(block.buffer).setUint32(1196, crc32(block.subarray(0, 1196)), true);
    sector.set(block, slot * 1216);
  }
  return new Uint8Array(Buffer.concat([padded, sector]));
}
