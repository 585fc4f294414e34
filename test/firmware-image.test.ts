import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { createImageInspector, FirmwareRejected, inspectImage, type FirmwareInfo } from "../lib/firmware/image.ts";
import { buildImage, readVector, signV2 } from "./support/firmware-image.ts";

const blink = readVector("esp_idf_blink_esp32s2.bin");
const bootloader = readVector("bootloader_esp32.bin");

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

const BLINK: FirmwareInfo = {
  version: "qa-test-v5.0-20220830-4-g4532e6",
  projectName: "blink",
  idfVersion: "v5.0-beta1-427-g4532e6e0b2-dirt", // "…-dirty" cut to 31 chars + NUL in the 32-byte field
  chip: "ESP32-S2",
  secureVersion: 0,
  elfSha256: "3059e6b55a965865febd28fa9f6028ad5cd0dab311febb0a3ea79eaa223ac2b0",
  size: 182368,
  sha256: sha256(blink),
  signature: "none",
};

function feed(bytes: Uint8Array, chunkSize: number): FirmwareInfo {
  const inspector = createImageInspector();
  for (let at = 0; at < bytes.length; at += chunkSize) inspector.update(bytes.subarray(at, at + chunkSize));
  return inspector.finish();
}

function rejected(fn: () => unknown, message: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof FirmwareRejected, `expected FirmwareRejected, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

/** Test-side walk of the segment table (independent of the implementation): where the checksum byte sits. */
function layout(img: Uint8Array) {
  const view = new DataView(img.buffer, img.byteOffset, img.byteLength);
  let pos = 24;
  const data: Array<[number, number]> = [];
  for (let i = 0; i < img[1]!; i++) {
    const len = view.getUint32(pos + 4, true);
    data.push([pos + 8, pos + 8 + len]);
    pos += 8 + len;
  }
  const checksumAt = pos + (15 - (pos % 16));
  return { data, checksumAt, end: checksumAt + 1 + (img[23] === 1 ? 32 : 0) };
}

/** Recompute the appended SHA-256 (if the image has one) so that only the intended change remains. */
function rehash(img: Uint8Array): Uint8Array {
  if (img[23] === 1) img.set(createHash("sha256").update(img.subarray(0, img.length - 32)).digest(), img.length - 32);
  return img;
}

/** Copy of `img` with byte `offset` set to `value`, checksum byte and digest kept consistent. */
function patch(img: Uint8Array, offset: number, value: number): Uint8Array {
  const out = img.slice();
  const { data, checksumAt } = layout(out);
  if (data.some(([from, to]) => offset >= from && offset < to)) out[checksumAt]! ^= out[offset]! ^ value;
  out[offset] = value;
  return rehash(out);
}

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
};

function pseudoRandom(n: number, seed: string): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0, block = 0; at < n; at += 32, block++) {
    out.set(createHash("sha256").update(`${seed}:${block}`).digest().subarray(0, Math.min(32, n - at)), at);
  }
  return out;
}

test("the vector is what the README says it is (guards the test itself)", () => {
  assert.equal(blink.length, 182368);
  assert.equal(blink[0], 0xe9);
  assert.equal(blink[23], 1);
  assert.equal(layout(blink).end, blink.length);
  assert.equal(createHash("sha256").update(blink.subarray(0, -32)).digest("hex"), Buffer.from(blink.subarray(-32)).toString("hex"));
});

test("the ESP-IDF blink image for ESP32-S2 is accepted", () => {
  assert.deepEqual(inspectImage(blink), BLINK);
});

test("odd chunk sizes give the same result", () => {
  for (const size of [1, 7, 175, 176, 177, 4093, 64 * 1024, blink.length + 1]) {
    assert.deepEqual(feed(blink, size), BLINK, `chunk size ${size}`);
  }
});

test("secure_version and app_elf_sha256 are read from the app descriptor, also when chunks split them", () => {
  const elfSha256 = "ab".repeat(32);
  const image = buildImage({ version: "sv-7", secureVersion: 0xfffffffe, elfSha256, size: 2000 });
  for (const size of [1, 35, 37, 177, 207, 208, 209, image.length]) {
    const info = feed(image, size);
    assert.equal(info.secureVersion, 0xfffffffe, `chunk size ${size}`);
    assert.equal(info.elfSha256, elfSha256, `chunk size ${size}`);
  }
});

test("chunks that are views into a larger buffer (non-zero byteOffset) are read correctly", () => {
  const backing = concat(new Uint8Array([1, 2, 3]), blink, new Uint8Array([4, 5]));
  assert.deepEqual(inspectImage(backing.subarray(3, 3 + blink.length)), BLINK);
});

test("an ESP32 bootloader image is rejected as not an application", () => {
  rejected(() => inspectImage(bootloader), /not an ESP32 application image: no app descriptor at offset 32 \(a bootloader or ESP8266 image\?\)/);
});

test("a bad start is rejected while streaming, before the upload ends, and the failure sticks", () => {
  const inspector = createImageInspector();
  rejected(() => inspector.update(bootloader.subarray(0, 64)), /app descriptor/);
  rejected(() => inspector.update(bootloader.subarray(64)), /app descriptor/);
  rejected(() => inspector.finish(), /app descriptor/);
});

test("an empty upload is rejected", () => {
  rejected(() => inspectImage(new Uint8Array(0)), /empty/);
  rejected(() => createImageInspector().finish(), /empty/);
});

test("random bytes are rejected", () => {
  const noise = pseudoRandom(4096, "noise");
  noise[0] = 0x42;
  rejected(() => inspectImage(noise), /not an ESP32 application image: it does not start with the image magic byte 0xE9/);
  noise[0] = 0xe9; // right magic by chance: still no descriptor
  rejected(() => inspectImage(noise), /no app descriptor at offset 32/);
});

test("ESP8266 images are rejected", () => {
  // v1 format: 8-byte header, then segments directly (no extended header, so no descriptor at 32).
  const esp8266 = new Uint8Array(48);
  esp8266.set([0xe9, 1, 0, 0x20, 0x00, 0x10, 0x10, 0x40]);
  new DataView(esp8266.buffer).setUint32(8, 0x40100000, true);
  new DataView(esp8266.buffer).setUint32(12, 32, true);
  esp8266.fill(0xaa, 16, 48);
  rejected(() => inspectImage(esp8266), /no app descriptor at offset 32 \(a bootloader or ESP8266 image\?\)/);
  const v2 = esp8266.slice();
  v2[0] = 0xea;
  rejected(() => inspectImage(v2), /ESP8266/);
});

test("a truncated image is rejected, wherever it is cut", () => {
  const cuts = [1, 10, 24, 35, 36, 100, 175, 176, 177, 1000, 35896, 35900, 91184, 182300, blink.length - 33, blink.length - 32, blink.length - 1];
  for (const cut of cuts) {
    const part = blink.subarray(0, cut);
    rejected(() => inspectImage(part), /^The image is truncated: /);
    rejected(() => feed(part, 7), /^The image is truncated: /);
  }
  // Once the segment table is known, the message gives the exact expected size.
  rejected(() => inspectImage(blink.subarray(0, blink.length - 1)), new RegExp(`${blink.length - 1} bytes arrived, but its header says it is ${blink.length} bytes`));
  rejected(() => inspectImage(blink.subarray(0, 1000)), /1000 bytes arrived, but its header and segments need at least \d+ bytes/);
});

test("one flipped byte in a hashed image is a SHA-256 mismatch", () => {
  for (const at of [blink.length >> 1, 60 /* inside the version string */, 23 + 1, blink.length - 1 /* in the digest */]) {
    const bad = blink.slice();
    bad[at]! ^= 0x01;
    rejected(() => inspectImage(bad), /SHA-256 does not match its contents \(corrupted upload\?\)/);
  }
});

test("the patch helper keeps images valid (so the rejections below are about the patched field)", () => {
  assert.deepEqual(inspectImage(patch(blink, 48, "Q".charCodeAt(0))), {
    ...BLINK,
    version: "Qa-test-v5.0-20220830-4-g4532e6",
    sha256: sha256(patch(blink, 48, "Q".charCodeAt(0))),
  });
});

test("an empty version string is rejected", () => {
  rejected(() => inspectImage(patch(blink, 48, 0)), /empty version/);
});

test("a descriptor string that is not UTF-8 is rejected", () => {
  rejected(() => inspectImage(patch(blink, 80, 0xff)), /project name is not valid UTF-8/);
});

test("trailing garbage after the image is rejected", () => {
  for (const extra of [new Uint8Array(1), pseudoRandom(16, "tail"), blink.subarray(-32), new Uint8Array(68), new Uint8Array(4096).fill(0xff)]) {
    rejected(() => inspectImage(concat(blink, extra)), new RegExp(`extra data after its end: it is 182368 bytes long, followed by ${extra.length} bytes that are not a signature`));
  }
  // More than any signature can be: rejected while streaming, not only at the end.
  const inspector = createImageInspector();
  inspector.update(blink);
  inspector.update(new Uint8Array(8191).fill(0xff));
  rejected(() => inspector.update(new Uint8Array([0xff])), /extra data after its end: it is 182368 bytes long, but more than 8191 further bytes arrived/);
});

test("the chip id is checked and reported", () => {
  const s3 = patch(blink, 12, 9);
  assert.equal(inspectImage(s3).chip, "ESP32-S3");
  rejected(() => inspectImage(patch(blink, 12, 0xff)), /chip id 0x00FF is not a known ESP32-family chip/);
  rejected(() => inspectImage(patch(blink, 13, 0x01)), /chip id 0x0102 is not a known/);
});

test("an image without an appended hash is walked and checksum-verified", () => {
  const plain = blink.slice(0, -32);
  plain[23] = 0;
  assert.deepEqual(inspectImage(plain), { ...BLINK, size: blink.length - 32, sha256: sha256(plain) });
  const bad = plain.slice();
  bad[bad.length >> 1]! ^= 0x80;
  rejected(() => inspectImage(bad), /checksum does not match its contents \(corrupted upload\?\)/);
  // Its 32 extra bytes are trailing data when the flag says no hash.
  const flagCleared = blink.slice();
  flagCleared[23] = 0;
  rejected(() => inspectImage(flagCleared), /extra data after its end: it is 182336 bytes long, followed by 32 bytes/);
});

test("a bad segment table is rejected", () => {
  // Second segment header is at 24 + 8 + 35864 = 35896; its data_len at 35900.
  assert.equal(layout(blink).data[1]![0], 35904);
  rejected(() => inspectImage(patch(blink, 35900, 0x4d)), /segment 2 of 6 has an invalid length 0x0000204D/);
  rejected(() => inspectImage(patch(blink, 35903, 0x01)), /segment 2 of 6 has an invalid length 0x0100204C/);
  rejected(() => inspectImage(patch(blink, 1, 0)), /declares 0 segments/);
  rejected(() => inspectImage(patch(blink, 1, 17)), /declares 17 segments/);
  // One segment fewer declared: the remaining bytes no longer line up with the end.
  rejected(() => inspectImage(patch(blink, 1, 5)), /^The image('s)? /);
});

/** Copy of a signed image with byte `offset` of its signature sector set to `value`. */
function patchSector(signed: Uint8Array, offset: number, value: number): Uint8Array {
  const out = signed.slice();
  out[out.length - 4096 + offset] = value;
  return out;
}

/** …and with the block's CRC-32 fixed again, so that only the intended change remains. */
function patchBlock(signed: Uint8Array, offset: number, value: number): Uint8Array {
  const out = patchSector(signed, offset, value);
  const block = out.subarray(out.length - 4096, out.length - 4096 + 1216);
  new DataView(block.buffer, block.byteOffset).setUint32(1196, crc32(block.subarray(0, 1196)), true);
  return out;
}

test("an image signed for Secure Boot v2 (RSA or ECDSA, one to three blocks) is accepted, also in odd chunks", () => {
  const signed = signV2(blink);
  assert.equal(signed.length, 184320 + 4096, "padded to 45 sectors, then the signature sector");
  const expected = { ...BLINK, size: signed.length, sha256: sha256(signed), signature: "secure boot v2" };
  assert.deepEqual(inspectImage(signed), expected);
  for (const size of [1, 1216, 4093, 8192]) assert.deepEqual(feed(signed, size), expected, `chunk size ${size}`);
  assert.equal(inspectImage(signV2(blink, { version: 3 })).signature, "secure boot v2");
  assert.equal(inspectImage(signV2(blink, { blocks: 3 })).signature, "secure boot v2");
});

test("an image that ends on a sector boundary (built with --secure-pad-v2) takes its signature sector right after", () => {
  let aligned: Uint8Array | null = null;
  for (let size = 8192; aligned === null; size += 4) {
    const candidate = buildImage({ version: "aligned", size });
    if (candidate.length % 4096 === 0) aligned = candidate;
  }
  const signed = signV2(aligned);
  assert.equal(signed.length, aligned.length + 4096);
  assert.equal(inspectImage(signed).signature, "secure boot v2");
});

test("a signature sector that is damaged, foreign or not a signature at all is rejected, saying what is wrong", () => {
  const signed = signV2(blink);
  const cases: [string, Uint8Array, RegExp][] = [
    ["made for another image", signV2(blink, { digestOf: buildImage({ version: "other", size: 100_000 }) }), /signature block 1 was made for other image contents/],
    ["a flipped digest byte", patchBlock(signed, 10, signed[signed.length - 4096 + 10]! ^ 1), /signature block 1 was made for other image contents/],
    ["a flipped signature byte (CRC)", patchSector(signed, 900, signed[signed.length - 4096 + 900]! ^ 1), /signature block 1 fails its CRC-32 check/],
    ["wrong magic", patchBlock(signed, 0, 0xe8), /signature block 1 does not start with the magic byte 0xE7/],
    ["unknown version", patchBlock(signed, 1, 4), /signature block 1 has version 4/],
    ["ECDSA P-384", patchBlock(signV2(blink, { version: 3 }), 2, 1), /SHA-384 digest \(ECDSA P-384\), which is not supported/],
    ["garbage in the second slot", patchSector(signed, 1216, 0x00), /signature block 2 does not start with the magic byte/],
    ["data after the blocks", patchSector(signed, 4000, 0x00), /signature sector has data after its signature blocks/],
    ["padding that is not 0xFF", (() => { const out = signed.slice(); out[blink.length + 5] = 0; return out; })(), /padding before its signature sector is not 0xFF/],
    ["a sector cut short", signed.subarray(0, -1), /extra data after its end: it is 182368 bytes long, followed by 6047 bytes that are not a signature/],
    ["a byte after the sector", concat(signed, new Uint8Array([0xff])), /followed by 6049 bytes that are not a signature/],
  ];
  for (const [name, bytes, message] of cases) {
    assert.throws(() => inspectImage(bytes), (err: unknown) => err instanceof FirmwareRejected && message.test(err.message), name);
  }
  const tamperedImage = signed.slice();
  tamperedImage[50_000]! ^= 1;
  rejected(() => inspectImage(tamperedImage), /SHA-256 does not match its contents/);
});

test("an ESP32 image with a Secure Boot v1 signature (version 0 and 64 bytes) is accepted; on other chips it is not", () => {
  const esp32 = patch(blink, 12, 0);
  const v1 = concat(esp32, new Uint8Array(4), randomBytes(64));
  assert.deepEqual(inspectImage(v1), { ...BLINK, chip: "ESP32", size: v1.length, sha256: sha256(v1), signature: "secure boot v1" });
  rejected(() => inspectImage(concat(esp32, new Uint8Array([1, 0, 0, 0]), randomBytes(64))), /followed by 68 bytes that are not a signature/);
  rejected(() => inspectImage(concat(blink, new Uint8Array(4), randomBytes(64))), /followed by 68 bytes that are not a signature/);
});
