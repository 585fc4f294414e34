/**
 * Streaming validator for ESP32-family application images (the `.bin` that `esptool elf2image` / ESP-IDF builds).
 *
 * Layout (all little-endian; esptool "Firmware Image Format", ESP-IDF esp_app_format.h / esp_app_desc.h):
 *   0   esp_image_header_t (24 bytes): magic 0xE9, segment_count, spi_mode, spi_speed/size, entry_addr u32,
 *       wp_pin, spi_pin_drv[3], chip_id u16 @12, min_chip_rev, min_chip_rev_full u16, max_chip_rev_full u16,
 *       reserved[4], hash_appended u8 @23
 *   24  segment_count × { load_addr u32, data_len u32, data[data_len] }
 *       — an application's first segment starts with esp_app_desc_t (so its magic 0xABCD5432 is at byte 32)
 *   …   zero padding, then one checksum byte (0xEF XOR every segment data byte) placed so that the position
 *       after it is a multiple of 16 (esptool `align_file_position(f, 16)` then writes the byte)
 *   …   if hash_appended == 1: SHA-256 of every byte before it (32 bytes)
 * Then nothing, or the signature of a signed app (esptool espsecure, ESP-IDF esp_image_format.c):
 *   Secure Boot v2 / signed apps (RSA-PSS, ECDSA): 0xFF padding to the next 4096-byte boundary, then one 4096-byte
 *       signature sector: up to three 1216-byte blocks { magic 0xE7, version 2 (RSA) or 3 (ECDSA), hash type
 *       @2 (0 = SHA-256), SHA-256 of every byte before the sector @4, key and signature, CRC-32 of bytes 0–1195
 *       @1196, zeros }, unused slots and the rest of the sector 0xFF
 *   Secure Boot v1 (ESP32): 68 bytes { version u32 = 0, ECDSA signature[64] } right after the image
 * The signatures themselves are the device's to verify (it holds the key); here a signature block must be
 * well-formed and made for exactly these bytes.
 *
 * The inspector is an incremental state machine: it keeps the first 208 bytes (header + descriptor fields it
 * reports), an 8-byte segment-header buffer, the 32-byte trailing digest, at most 8 KiB of signature and
 * one running SHA-256 — memory does not grow with the image. `update()` throws as soon as the stream is known to
 * be bad (so an upload can be aborted early); `finish()` throws for what can only be known at the end
 * (truncation, digest, checksum, signature).
 */
import { createHash, type Hash } from "node:crypto";
import { crc32 } from "node:zlib";

export type FirmwareInfo = {
  version: string;
  projectName: string;
  idfVersion: string;
  /** e.g. "ESP32-S2" */
  chip: string;
  /** The app descriptor's anti-rollback version (secure_version). */
  secureVersion: number;
  /** The app descriptor's app_elf_sha256: lowercase hex SHA-256 of the ELF file the image was made from. */
  elfSha256: string;
  /** bytes in the whole file */
  size: number;
  /** lowercase hex SHA-256 of the whole file */
  sha256: string;
  /** The signature appended for secure boot, if any (checked for form and contents, not for its key). */
  signature: "none" | "secure boot v1" | "secure boot v2";
};

/** The uploaded bytes are not an acceptable application image; `message` says why, for the uploader. */
export class FirmwareRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FirmwareRejected";
  }
}

export type ImageInspector = {
  /** Feed the next bytes of the file. May throw FirmwareRejected. The chunk is not retained. */
  update(chunk: Uint8Array): void;
  /** Call once after the last chunk. Throws FirmwareRejected, or returns what the image says about itself. */
  finish(): FirmwareInfo;
};

/** esp_chip_id_t (ESP-IDF esp_app_format.h; IMAGE_CHIP_ID in esptool/targets/*.py). Beta/pre-release ids excluded. */
const CHIP_NAMES: ReadonlyMap<number, string> = new Map([
  [0x0000, "ESP32"],
  [0x0002, "ESP32-S2"],
  [0x0005, "ESP32-C3"],
  [0x0009, "ESP32-S3"],
  [0x000c, "ESP32-C2"],
  [0x000d, "ESP32-C6"],
  [0x0010, "ESP32-H2"],
  [0x0012, "ESP32-P4"],
  [0x0014, "ESP32-C61"],
  [0x0017, "ESP32-C5"],
  [0x0019, "ESP32-H21"],
  [0x001c, "ESP32-H4"],
  [0x0020, "ESP32-S31"],
]);

const IMAGE_MAGIC = 0xe9;
const ESP8266_V2_MAGIC = 0xea;
const IMAGE_HEADER_LEN = 24;
const SEGMENT_HEADER_LEN = 8;
const MAX_SEGMENTS = 16; // ESP_IMAGE_MAX_SEGMENTS
const MAX_SEGMENT_LEN = 16 * 1024 * 1024; // ESP-IDF verify_segment_header: data_len < 16 MB and a multiple of 4
const CHECKSUM_SEED = 0xef; // ESP_ROM_CHECKSUM_INITIAL
const DIGEST_LEN = 32;

const APP_DESC_OFFSET = IMAGE_HEADER_LEN + SEGMENT_HEADER_LEN; // 32
const APP_DESC_MAGIC = 0xabcd5432;
const APP_DESC_LEN = 256; // sizeof(esp_app_desc_t)
// esp_app_desc_t: magic u32, secure_version u32, reserv1[2] u32, version[32], project_name[32], time[16],
// date[16], idf_ver[32], app_elf_sha256[32], …
const VERSION = { offset: APP_DESC_OFFSET + 16, len: 32, what: "version" } as const; // 48
const PROJECT_NAME = { offset: APP_DESC_OFFSET + 48, len: 32, what: "project name" } as const; // 80
const IDF_VERSION = { offset: APP_DESC_OFFSET + 112, len: 32, what: "ESP-IDF version" } as const; // 144
const SECURE_VERSION_AT = APP_DESC_OFFSET + 4; // 36
const ELF_SHA256 = { offset: APP_DESC_OFFSET + 144, len: 32 } as const; // 176
/** Bytes kept from the start of the file: everything up to the end of app_elf_sha256. */
const PREFIX_LEN = ELF_SHA256.offset + ELF_SHA256.len; // 208

const SECTOR = 4096;
const SIG_BLOCK_LEN = 1216;
const SIG_BLOCK_SLOTS = 3;
const SIG_BLOCK_MAGIC = 0xe7;
const SIG_BLOCK_CRC_AT = 1196;
const V1_SIGNATURE_LEN = 68;
/** The longest signature tail: 0xFF padding short of a sector boundary, then the signature sector. */
const MAX_TAIL = SECTOR - 1 + SECTOR;

const NOT_AN_APP = "This is not an ESP32 application image";
const utf8 = new TextDecoder("utf-8", { fatal: true });

const u16 = (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8);
const u32 = (b: Uint8Array, at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
const hex = (n: number, width: number) => `0x${n.toString(16).toUpperCase().padStart(width, "0")}`;

function cString(b: Uint8Array, field: { offset: number; len: number; what: string }): string {
  const bytes = b.subarray(field.offset, field.offset + field.len);
  const nul = bytes.indexOf(0);
  try {
    return utf8.decode(nul === -1 ? bytes : bytes.subarray(0, nul));
  } catch {
    throw new FirmwareRejected(`The image's app descriptor ${field.what} is not valid UTF-8.`);
  }
}

const truncated = (got: number, needAtLeast: number, exact: boolean) =>
  new FirmwareRejected(
    `The image is truncated: ${got} byte${got === 1 ? "" : "s"} arrived, but ${exact ? "its header says it is" : "its header and segments need at least"} ${needAtLeast} bytes.`,
  );

type Header = Pick<FirmwareInfo, "chip" | "version" | "projectName" | "idfVersion" | "secureVersion" | "elfSha256"> & {
  segmentCount: number;
  hashAppended: boolean;
};

/**
 * Check the first bytes of the file. `b` may be shorter than PREFIX_LEN; then every check whose bytes are
 * present is made, and (only `atEnd`) the shortness is reported as truncation. Returns the header once complete.
 */
function checkPrefix(b: Uint8Array, atEnd: boolean): Header | null {
  if (b.length >= 1 && b[0] !== IMAGE_MAGIC) {
    if (b[0] === ESP8266_V2_MAGIC) throw new FirmwareRejected(`${NOT_AN_APP}: it is an ESP8266 (v2 format) image.`);
    throw new FirmwareRejected(`${NOT_AN_APP}: it does not start with the image magic byte 0xE9.`);
  }
  if (b.length >= APP_DESC_OFFSET + 4 && u32(b, APP_DESC_OFFSET) !== APP_DESC_MAGIC) {
    throw new FirmwareRejected(
      `${NOT_AN_APP}: no app descriptor at offset ${APP_DESC_OFFSET} (a bootloader or ESP8266 image?).`,
    );
  }
  if (b.length < PREFIX_LEN) {
    if (atEnd) throw truncated(b.length, PREFIX_LEN, false);
    return null;
  }
  const chipId = u16(b, 12);
  const chip = CHIP_NAMES.get(chipId);
  if (chip === undefined) {
    throw new FirmwareRejected(`${NOT_AN_APP}: its chip id ${hex(chipId, 4)} is not a known ESP32-family chip.`);
  }
  const segmentCount = b[1]!;
  if (segmentCount < 1 || segmentCount > MAX_SEGMENTS) {
    throw new FirmwareRejected(`The image is malformed: it declares ${segmentCount} segments (1 to ${MAX_SEGMENTS} allowed).`);
  }
  const firstSegmentLen = u32(b, IMAGE_HEADER_LEN + 4);
  if (firstSegmentLen < APP_DESC_LEN) {
    throw new FirmwareRejected(
      `The image is malformed: its first segment (${firstSegmentLen} bytes) is too small to hold the app descriptor.`,
    );
  }
  const version = cString(b, VERSION);
  if (version === "") throw new FirmwareRejected("The image's app descriptor has an empty version string.");
  return {
    segmentCount,
    chip,
    hashAppended: b[23] === 1,
    version,
    projectName: cString(b, PROJECT_NAME),
    idfVersion: cString(b, IDF_VERSION),
    secureVersion: u32(b, SECURE_VERSION_AT),
    elfSha256: Buffer.from(b.subarray(ELF_SHA256.offset, ELF_SHA256.offset + ELF_SHA256.len)).toString("hex"),
  };
}

const allErased = (bytes: Uint8Array) => bytes.every((byte) => byte === 0xff);

/** A Secure Boot v2 signature block (1216 bytes) made for the bytes whose SHA-256 is `digest`; null when sound. */
function signatureBlockProblem(block: Uint8Array, digest: Buffer): string | null {
  if (block[0] !== SIG_BLOCK_MAGIC) return "does not start with the magic byte 0xE7";
  if (block[1] !== 2 && block[1] !== 3) return `has version ${block[1]} (2 for RSA or 3 for ECDSA expected)`;
  if (block[1] === 3 && block[2] !== 0) return "uses a SHA-384 digest (ECDSA P-384), which is not supported";
  if ((crc32(block.subarray(0, SIG_BLOCK_CRC_AT)) >>> 0) !== u32(block, SIG_BLOCK_CRC_AT)) return "fails its CRC-32 check";
  if (!digest.equals(block.subarray(4, 4 + DIGEST_LEN))) return "was made for other image contents (its SHA-256 differs)";
  return null;
}

/**
 * Check what follows the image (`imageEnd` bytes, whose SHA-256 state is `imageHash`): nothing, a Secure Boot v1
 * signature or a Secure Boot v2 signature sector. Returns the kind of signature found, or throws.
 */
function checkSignatureTail(tail: Uint8Array, imageEnd: number, imageHash: Hash, chip: string): FirmwareInfo["signature"] {
  if (tail.length === 0) return "none";
  const gap = (SECTOR - (imageEnd % SECTOR)) % SECTOR;
  // Only the original ESP32 has Secure Boot v1; its signature cannot be checked further without the key.
  if (chip === "ESP32" && tail.length === V1_SIGNATURE_LEN && u32(tail, 0) === 0) return "secure boot v1";
  if (tail.length !== gap + SECTOR) {
    throw new FirmwareRejected(
      `The image has extra data after its end: it is ${imageEnd} bytes long, followed by ${tail.length} bytes that are not a signature ` +
        `(a signed image would have ${gap} bytes of 0xFF padding and a ${SECTOR}-byte signature sector, or on an ESP32 a 68-byte Secure Boot v1 signature).`,
    );
  }
  if (!allErased(tail.subarray(0, gap))) throw new FirmwareRejected("The image's padding before its signature sector is not 0xFF.");
  const digest = imageHash.update(tail.subarray(0, gap)).digest();
  const sector = tail.subarray(gap);
  for (let slot = 0; slot < SIG_BLOCK_SLOTS; slot++) {
    const block = sector.subarray(slot * SIG_BLOCK_LEN, (slot + 1) * SIG_BLOCK_LEN);
    if (slot > 0 && allErased(block)) continue;
    const problem = signatureBlockProblem(block, digest);
    if (problem) throw new FirmwareRejected(`The image's signature block ${slot + 1} ${problem}.`);
  }
  if (!allErased(sector.subarray(SIG_BLOCK_SLOTS * SIG_BLOCK_LEN))) {
    throw new FirmwareRejected("The image's signature sector has data after its signature blocks.");
  }
  return "secure boot v2";
}

type Phase = "imageHeader" | "segmentHeader" | "segmentData" | "padding" | "checksum" | "digest" | "end";

export function createImageInspector(): ImageInspector {
  const fileHash = createHash("sha256");
  const prefix = new Uint8Array(PREFIX_LEN);
  let prefixFill = 0;
  let header: Header | null = null;
  let contentHash: Hash | null = null; // SHA-256 state of everything before the appended digest (hashed images only)

  let size = 0; // bytes received
  let walked = 0; // bytes consumed by the structural walk (lags `size` only while the prefix fills)
  let phase: Phase = "imageHeader";
  let left = IMAGE_HEADER_LEN; // bytes left in the current phase
  let segment = 0; // index of the current segment
  const segmentHeader = new Uint8Array(SEGMENT_HEADER_LEN);
  const digest = new Uint8Array(DIGEST_LEN);
  let checksum = CHECKSUM_SEED;
  let checksumOk = true;
  // After the image: a signature, if any (at most MAX_TAIL bytes), and the SHA-256 state of the image before it.
  const tail = new Uint8Array(MAX_TAIL);
  let tailFill = 0;
  let imageHash: Hash | null = null;

  let failure: FirmwareRejected | null = null;
  let finished = false;

  const enter = (next: Phase, length: number) => {
    phase = next;
    left = length;
  };
  const afterSegments = () => enter("padding", 15 - (walked % 16));

  /** Keep what follows the image, for checkSignatureTail; more than any signature can be is rejected at once. */
  function collectTail(bytes: Uint8Array) {
    if (tailFill + bytes.length > MAX_TAIL) {
      throw new FirmwareRejected(
        `The image has extra data after its end: it is ${walked} bytes long, but more than ${MAX_TAIL} further bytes arrived (more than any signature).`,
      );
    }
    fileHash.update(bytes);
    tail.set(bytes, tailFill);
    tailFill += bytes.length;
  }

  /** Advance the structural walk over `bytes` (which follow everything walked so far). */
  function walk(bytes: Uint8Array) {
    let i = 0;
    while (i < bytes.length) {
      if (phase === "end") return collectTail(bytes.subarray(i));
      const take = Math.min(left, bytes.length - i);
      const part = bytes.subarray(i, i + take);
      fileHash.update(part);
      if (phase === "digest") digest.set(part, DIGEST_LEN - left);
      else if (phase === "segmentHeader") segmentHeader.set(part, SEGMENT_HEADER_LEN - left);
      else if (phase === "segmentData") for (const byte of part) checksum ^= byte;
      else if (phase === "checksum") checksumOk = part[0] === checksum;
      i += take;
      walked += take;
      left -= take;
      if (left === 0) advance();
    }
  }

  /** The current phase is complete: move on, past any phases that are empty (zero-length segment, no padding). */
  function advance() {
    do step();
    while (left === 0 && phase !== "end");
  }

  function step() {
    switch (phase) {
      case "imageHeader":
        return enter("segmentHeader", SEGMENT_HEADER_LEN);
      case "segmentHeader": {
        const len = u32(segmentHeader, 4);
        if (len % 4 !== 0 || len >= MAX_SEGMENT_LEN) {
          throw new FirmwareRejected(
            `The image is malformed: segment ${segment + 1} of ${header!.segmentCount} has an invalid length ${hex(len, 8)}.`,
          );
        }
        return enter("segmentData", len);
      }
      case "segmentData":
        segment += 1;
        return segment < header!.segmentCount ? enter("segmentHeader", SEGMENT_HEADER_LEN) : afterSegments();
      case "padding":
        return enter("checksum", 1);
      case "checksum":
        if (!header!.hashAppended) return reachEnd();
        // The file hash has taken in exactly the bytes the appended digest covers.
        contentHash = fileHash.copy();
        return enter("digest", DIGEST_LEN);
      case "digest":
        return reachEnd();
      case "end":
        return;
    }
  }

  /** The image proper is complete: what the file hash has taken in so far is exactly the image. */
  function reachEnd() {
    imageHash = fileHash.copy();
    enter("end", 0);
  }

  /** Smallest file length consistent with what has been walked (exact once every segment header is known). */
  function expectedLength(): { length: number; exact: boolean } {
    const tail = 1 + (header!.hashAppended ? DIGEST_LEN : 0);
    if (phase === "segmentHeader" || phase === "segmentData") {
      const segmentsAfter = header!.segmentCount - segment - 1;
      return { length: walked + left + segmentsAfter * SEGMENT_HEADER_LEN + tail, exact: false };
    }
    const end = phase === "padding" ? walked + left + 1 : phase === "checksum" ? walked + 1 : walked - (DIGEST_LEN - left);
    return { length: end + (header!.hashAppended ? DIGEST_LEN : 0), exact: true };
  }

  function guarded<T>(fn: () => T): T {
    if (failure) throw failure;
    if (finished) throw new Error("This image inspector has already finished.");
    try {
      return fn();
    } catch (err) {
      if (err instanceof FirmwareRejected) failure = err;
      throw err;
    }
  }

  return {
    update(chunk) {
      guarded(() => {
        if (chunk.length === 0) return;
        size += chunk.length;
        if (header === null) {
          const n = Math.min(PREFIX_LEN - prefixFill, chunk.length);
          prefix.set(chunk.subarray(0, n), prefixFill);
          prefixFill += n;
          chunk = chunk.subarray(n);
          header = checkPrefix(prefix.subarray(0, prefixFill), false);
          if (header === null) return;
          walk(prefix);
        }
        walk(chunk);
      });
    },

    finish() {
      return guarded(() => {
        finished = true;
        if (size === 0) throw new FirmwareRejected("The upload is empty.");
        const h = header ?? checkPrefix(prefix.subarray(0, prefixFill), true)!;
        if (phase !== "end") {
          const { length, exact } = expectedLength();
          throw truncated(size, length, exact);
        }
        if (contentHash && !Buffer.from(digest).equals(contentHash.digest())) {
          throw new FirmwareRejected("The image's SHA-256 does not match its contents (corrupted upload?).");
        }
        if (!checksumOk) {
          throw new FirmwareRejected("The image's checksum does not match its contents (corrupted upload?).");
        }
        const signature = checkSignatureTail(tail.subarray(0, tailFill), size - tailFill, imageHash!, h.chip);
        return {
          signature,
          version: h.version,
          projectName: h.projectName,
          idfVersion: h.idfVersion,
          chip: h.chip,
          secureVersion: h.secureVersion,
          elfSha256: h.elfSha256,
          size,
          sha256: fileHash.digest("hex"),
        };
      });
    },
  };
}

/** Validate an image held in memory (tests, small inputs). Throws FirmwareRejected. */
export function inspectImage(bytes: Uint8Array): FirmwareInfo {
  const inspector = createImageInspector();
  inspector.update(bytes);
  return inspector.finish();
}
