import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { buildNvsImage, parseNvsCsv, type NvsContents } from "../lib/provisioning/nvs.ts";
import { readFixture } from "./support/fixtures.ts";

const vector = (name: string) => readFixture(`nvs/${name}`);

function assertSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  const length = Math.min(actual.length, expected.length);
  for (let i = 0; i < length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`first difference at offset 0x${i.toString(16)}: got 0x${actual[i]!.toString(16)}, want 0x${expected[i]!.toString(16)}`);
    }
  }
  assert.equal(actual.length, expected.length, "image length");
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

// An independent CRC32 (table-driven) with the semantics of zlib.crc32(data, 0xFFFFFFFF) used by ESP-IDF.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc(bytes: Uint8Array): number {
  let c = 0; // zlib inverts the 0xFFFFFFFF seed before starting
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

type PageSummary = "blank" | { state: "active" | "full"; usedSlots: number };

/** A small NVS reader: checks every CRC, span and bitmap state, and returns what the image holds. */
function readNvs(image: Uint8Array): { pages: PageSummary[]; contents: NvsContents } {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const namespaces = new Map<number, { name: string; entries: { key: string; value: string }[] }>();
  const pages: PageSummary[] = [];
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const cString = (bytes: Uint8Array) => decoder.decode(bytes.subarray(0, bytes.indexOf(0)));

  for (let p = 0; p < image.length / 4096; p++) {
    const base = p * 4096;
    const page = image.subarray(base, base + 4096);
    if (page.every((b) => b === 0xff)) {
      pages.push("blank");
      continue;
    }
    const state = view.getUint32(base, true);
    assert.ok(state === 0xfffffffe || state === 0xfffffffc, `page ${p}: state 0x${state.toString(16)}`);
    assert.equal(view.getUint32(base + 4, true), p, `page ${p}: sequence number`);
    assert.equal(page[8], 0xfe, `page ${p}: format version`);
    assert.ok(page.subarray(9, 28).every((b) => b === 0xff), `page ${p}: reserved header bytes`);
    assert.equal(view.getUint32(base + 28, true), crc(page.subarray(4, 28)), `page ${p}: header CRC`);
    const slotState = (slot: number) => (page[32 + (slot >> 2)]! >> ((slot & 3) * 2)) & 3;
    const entry = (slot: number) => page.subarray(64 + slot * 32, 96 + slot * 32);

    let slot = 0;
    while (slot < 126 && slotState(slot) !== 3) {
      assert.equal(slotState(slot), 2, `page ${p} slot ${slot}: state`);
      const item = entry(slot);
      const itemView = new DataView(item.buffer, item.byteOffset, 32);
      const covered = new Uint8Array(28);
      covered.set(item.subarray(0, 4));
      covered.set(item.subarray(8), 4);
      assert.equal(itemView.getUint32(4, true), crc(covered), `page ${p} slot ${slot}: item CRC`);
      assert.equal(item[3], 0xff, `page ${p} slot ${slot}: chunk index`);
      assert.ok(item.subarray(8, 24).includes(0), `page ${p} slot ${slot}: key is NUL-terminated`);
      const key = cString(item.subarray(8, 24));
      const span = item[2]!;
      if (item[0] === 0) {
        assert.deepEqual([item[1], span], [0x01, 1], `page ${p} slot ${slot}: namespace entry type and span`);
        assert.ok(item.subarray(25).every((b) => b === 0xff));
        namespaces.set(item[24]!, { name: key, entries: [] });
      } else {
        assert.equal(item[1], 0x21, `page ${p} slot ${slot}: string type`);
        const size = itemView.getUint16(24, true);
        assert.equal(span, 1 + Math.ceil(size / 32), `page ${p} slot ${slot}: span for ${size} bytes`);
        assert.ok(slot + span <= 126, `page ${p} slot ${slot}: string runs past the page`);
        for (let s = slot + 1; s < slot + span; s++) assert.equal(slotState(s), 2, `page ${p} slot ${s}: data state`);
        const area = image.subarray(base + 64 + (slot + 1) * 32, base + 64 + (slot + span) * 32);
        const data = area.subarray(0, size);
        assert.equal(itemView.getUint32(28, true), crc(data), `page ${p} slot ${slot}: data CRC`);
        assert.equal(data[size - 1], 0, `page ${p} slot ${slot}: string NUL terminator`);
        assert.ok(area.subarray(size).every((b) => b === 0xff), `page ${p} slot ${slot}: padding`);
        const ns = namespaces.get(item[0]!);
        assert.ok(ns, `page ${p} slot ${slot}: unknown namespace index ${item[0]}`);
        ns.entries.push({ key, value: decoder.decode(data.subarray(0, size - 1)) });
      }
      slot += span;
    }
    for (let s = slot; s < 126; s++) {
      assert.equal(slotState(s), 3, `page ${p} slot ${s}: should be free`);
      assert.ok(entry(s).every((b) => b === 0xff), `page ${p} slot ${s}: free slot is not blank`);
    }
    pages.push({ state: state === 0xfffffffe ? "active" : "full", usedSlots: slot });
  }
  const used = pages.filter((pg) => pg !== "blank");
  used.forEach((pg, i) => assert.equal(pg.state, i === used.length - 1 ? "active" : "full", "only the last used page is active"));
  assert.equal(pages.at(-1), "blank", "the last page is reserved and blank");
  return { pages, contents: { namespaces: [...namespaces.values()] } };
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/";
const filler = (length: number, seed: number) =>
  Array.from({ length }, (_, i) => ALPHABET[(i * 7 + seed) % ALPHABET.length]).join("");

/**
 * A CSV that crosses pages in the tool's awkward places: a 3967-byte string (the longest the tool
 * accepts) moves to a fresh page, a namespace entry lands on a page's last slot, and a string that would
 * end exactly on the last slot is moved to the next page instead.
 */
function layoutCsv(): string {
  const lines = [
    "# Exercises page changes: a namespace on a page's last slot, a string moved rather than ending on one",
    "key,type,encoding,value",
    "wifi,namespace,,",
    'ssid,data,string,"My ""home"", network"',
    `psk,data,string,${filler(63, 1)}`,
    "empty,data,string,",
    "certs,namespace,,",
    `ca,data,string,${filler(3000, 2)}`,
    `big,data,string,${filler(3967, 3)}`,
    "fill,namespace,,",
    `first,data,string,${filler(130, 4)}`,
    ...Array.from({ length: 24 }, (_, i) => `k${i},data,string,${filler(100, 5 + i)}`),
    "unused,namespace,,",
    "tail,namespace,,",
    "last,data,string,end",
  ];
  return lines.join("\n") + "\n";
}

describe("buildNvsImage matches Espressif's nvs_partition_gen", () => {
  const contents = parseNvsCsv(vector("prov-basic.csv").toString("utf8"));

  for (const size of [0x3000, 0x4000, 0x6000]) {
    it(`prov-basic.csv at 0x${size.toString(16)} bytes`, () => {
      assertSameBytes(buildNvsImage(contents, size), vector(`prov-basic-0x${size.toString(16)}.bin`));
    });
  }

  it("prov-basic reads back as the CSV's namespace and eight values", () => {
    const { pages, contents: read } = readNvs(buildNvsImage(contents, 0x4000));
    assert.deepEqual(pages, [{ state: "active", usedSlots: 19 }, "blank", "blank", "blank"]);
    assert.deepEqual(read, contents);
    assert.equal(read.namespaces[0]?.entries.find((e) => e.key === "wifi_password")?.value, "correct horse battery staple");
  });

  // SHA-256 of what Espressif's nvs_partition_gen.py page/entry code (espressif/esp-idf-nvs-partition-gen,
  // run with its `generate` logic, version 2) wrote for layoutCsv() at these sizes.
  const layoutDigests: Record<number, string> = {
    0x5000: "e6f9e730ada07834d757d3a9c2cf2ff5ef424090b726407ee81e93d474e22e01",
    0x8000: "b6833a86f01191f0f15ca3ec54ec0a3af5780b20bd32702c48c7cfdc7ca2178d",
  };
  for (const [size, digest] of Object.entries(layoutDigests)) {
    it(`multi-page, multi-namespace CSV at 0x${Number(size).toString(16)} bytes`, () => {
      assert.equal(sha256(buildNvsImage(parseNvsCsv(layoutCsv()), Number(size))), digest);
    });
  }

  it("lays the multi-page CSV out across pages as the tool does", () => {
    const csv = parseNvsCsv(layoutCsv());
    const { pages, contents: read } = readNvs(buildNvsImage(csv, 0x5000));
    assert.deepEqual(pages, [
      { state: "full", usedSlots: 104 }, // wifi + 3 strings, certs + "ca"; "big" (125 slots) does not fit
      { state: "full", usedSlots: 126 }, // "big", then namespace "fill" on the last slot
      { state: "full", usedSlots: 121 }, // "first" + 23 strings of 5 slots; the 24th would end on slot 125
      { state: "active", usedSlots: 9 }, // k23, "unused", "tail", "last"
      "blank",
    ]);
    assert.deepEqual(read, csv);
    assert.equal(read.namespaces[0]?.entries[0]?.value, 'My "home", network');
    assert.equal(read.namespaces[0]?.entries[2]?.value, "");
    assert.deepEqual(read.namespaces[3], { name: "unused", entries: [] });
  });

  it("rejects data that does not fit the partition", () => {
    assert.throws(() => buildNvsImage(parseNvsCsv(layoutCsv()), 0x4000), /do not fit in a 0x4000-byte NVS partition/);
  });
});

describe("buildNvsImage", () => {
  const one = (key: string, value: string): NvsContents => ({ namespaces: [{ name: "prov", entries: [{ key, value }] }] });

  it("stores a 200-byte string over 8 entries and reads it back", () => {
    const value = filler(200, 9);
    const image = buildNvsImage(one("long", value), 0x3000);
    const { pages, contents } = readNvs(image);
    assert.deepEqual(pages, [{ state: "active", usedSlots: 1 + 8 }, "blank", "blank"]);
    assert.deepEqual(contents, one("long", value));
    assert.equal(image[64 + 32 + 2], 8, "span: header + ceil(201 / 32) data entries");
  });

  it("stores UTF-8 values with their byte length", () => {
    const value = "Grüße, 温度 ✓";
    const image = buildNvsImage(one("greeting", value), 0x3000);
    assert.equal(new DataView(image.buffer).getUint16(64 + 32 + 24, true), Buffer.byteLength(value) + 1);
    assert.deepEqual(readNvs(image).contents, one("greeting", value));
  });

  it("keeps several namespaces apart", () => {
    const contents: NvsContents = {
      namespaces: [
        { name: "a", entries: [{ key: "x", value: "1" }] },
        { name: "b", entries: [{ key: "x", value: "2" }] },
      ],
    };
    assert.deepEqual(readNvs(buildNvsImage(contents, 0x3000)).contents, contents);
  });

  it("rejects partition sizes the tool refuses", () => {
    for (const size of [0, 0x1000, 0x2000, 0x3800, 0x3001, 12288.5, -0x3000]) {
      assert.throws(() => buildNvsImage(one("k", "v"), size), /multiple of 0x1000 and at least 0x3000 bytes/, `size ${size}`);
    }
    assert.throws(() => buildNvsImage(one("k", "v"), 0x40000000), /at most 0x1000000 bytes/);
  });

  it("rejects keys and namespaces longer than 15 bytes, empty or duplicated", () => {
    assert.doesNotThrow(() => buildNvsImage(one("k".repeat(15), "v"), 0x3000));
    assert.throws(() => buildNvsImage(one("k".repeat(16), "v"), 0x3000), /key "k{16}" is 16 bytes long; NVS allows at most 15/);
    assert.throws(() => buildNvsImage(one("ключ_ключ", "v"), 0x3000), /key "ключ_ключ" is 17 bytes long/);
    assert.throws(() => buildNvsImage(one("", "v"), 0x3000), /key name must be a non-empty string/);
    assert.throws(
      () => buildNvsImage({ namespaces: [{ name: "n".repeat(16), entries: [] }] }, 0x3000),
      /namespace "n{16}" is 16 bytes long/,
    );
    assert.throws(
      () => buildNvsImage({ namespaces: [{ name: "a", entries: [] }, { name: "a", entries: [] }] }, 0x3000),
      /namespace "a" is given twice/,
    );
    assert.throws(
      () => buildNvsImage({ namespaces: [{ name: "a", entries: [{ key: "k", value: "1" }, { key: "k", value: "2" }] }] }, 0x3000),
      /key "k" is given twice/,
    );
  });

  it("accepts strings up to 3967 bytes and rejects longer ones", () => {
    assert.deepEqual(readNvs(buildNvsImage(one("max", "x".repeat(3967)), 0x3000)).contents, one("max", "x".repeat(3967)));
    assert.throws(() => buildNvsImage(one("max", "x".repeat(3968)), 0x3000), /"max" is 3968 bytes long; NVS strings are at most 3967 bytes/);
    assert.throws(() => buildNvsImage(one("nul", "a\0b"), 0x3000), /contains a NUL character/);
  });
});

describe("parseNvsCsv", () => {
  it("reads the reference CSV", () => {
    const contents = parseNvsCsv(vector("prov-basic.csv").toString("utf8"));
    assert.equal(contents.namespaces.length, 1);
    assert.equal(contents.namespaces[0]?.name, "prov");
    assert.deepEqual(
      contents.namespaces[0]?.entries.map((e) => e.key),
      ["device_key", "client_id", "client_secret", "token_url", "base_url", "mqtt_url", "wifi_ssid", "wifi_password"],
    );
    assert.equal(contents.namespaces[0]?.entries[3]?.value, "https://keycloak.local/realms/iot/protocol/openid-connect/token");
  });

  it("handles quotes, commas, comments, blank lines, CRLF, a BOM and multi-line values", () => {
    const text =
      '\uFEFF# comment\r\nkey,type,encoding,value\r\n\r\nns,namespace,,\r\n"a,b",data,string,"say ""hi"", twice"\r\n' +
      'multi,data,string,"line 1\nline 2"\r\n# another comment\r\nplain,data,string,it\'s "raw"\r\nnone,data,string,';
    assert.deepEqual(parseNvsCsv(text), {
      namespaces: [
        {
          name: "ns",
          entries: [
            { key: "a,b", value: 'say "hi", twice' },
            { key: "multi", value: "line 1\nline 2" },
            { key: "plain", value: 'it\'s "raw"' },
            { key: "none", value: "" },
          ],
        },
      ],
    });
  });

  it("accepts the columns in any order", () => {
    assert.deepEqual(parseNvsCsv("type,key,value,encoding\nnamespace,ns,,\ndata,k,v,string\n"), {
      namespaces: [{ name: "ns", entries: [{ key: "k", value: "v" }] }],
    });
  });

  it("names the line and the unsupported encoding or type", () => {
    for (const encoding of ["u8", "i32", "hex2bin", "base64", "binary", "STRING"]) {
      assert.throws(
        () => parseNvsCsv(`key,type,encoding,value\nns,namespace,,\nk,data,${encoding},1\n`),
        { message: `line 3: encoding "${encoding}" is not supported; only "string" values are` },
      );
    }
    assert.throws(
      () => parseNvsCsv("key,type,encoding,value\nns,namespace,,\n# c\ncert,file,binary,cert.der\n"),
      { message: 'line 4: type "file" is not supported; give the value inline as a data row' },
    );
    assert.throws(() => parseNvsCsv("key,type,encoding,value\nns,namespace,,\nk,blob,string,v\n"), /line 3: unknown type "blob"/);
  });

  it("rejects malformed CSV with the line number", () => {
    const header = "key,type,encoding,value\n";
    assert.throws(() => parseNvsCsv(""), /the NVS CSV is empty/);
    assert.throws(() => parseNvsCsv("name,kind\n"), /line 1: the header must name the columns key,type,encoding,value/);
    assert.throws(() => parseNvsCsv(`${header}k,data,string,v\n`), /line 2: key "k" comes before any namespace row/);
    assert.throws(() => parseNvsCsv(`${header}ns,namespace,,\nk,data,string,a,b\n`), /line 3: 5 fields but the header has 4; quote values/);
    assert.throws(() => parseNvsCsv(`${header}ns,namespace,,\nk,data,string\n`), /line 3: the value field is missing/);
    assert.throws(() => parseNvsCsv(`${header}ns,namespace,,\nk,data,string,"open\n`), /line 3: a quoted field is never closed/);
    assert.throws(() => parseNvsCsv(`${header}ns,namespace,,\nk,data,string,"a"b\n`), /line 3: unexpected text after a closing quote/);
    assert.throws(() => parseNvsCsv(`${header}ns,namespace,,\n${"k".repeat(16)},data,string,v\n`), /line 3: key "k{16}" is 16 bytes long/);
    assert.throws(() => parseNvsCsv(`${header}ns,namespace,,\nk,data,string,1\nk,data,string,2\n`), /line 4: key "k" appears twice in namespace "ns"/);
    assert.throws(() => parseNvsCsv(`${header}a,namespace,,\nb,namespace,,\na,namespace,,\n`), /line 4: namespace "a" appears twice/);
    assert.throws(() => parseNvsCsv(`${header}ns,namespace,,\nk,data,string,${"x".repeat(3968)}\n`), /line 3: the value of key "k" is 3968 bytes long/);
  });
});
