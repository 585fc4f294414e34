/**
 * ESP-IDF NVS partition image generator for string values.
 *
 * Produces the same bytes as Espressif's `nvs_partition_gen generate` (esp-idf-nvs-partition-gen,
 * format version 2, no encryption) for the same namespaces, keys and values.
 */
import { crc32 } from "node:zlib";

export interface NvsEntry {
  key: string;
  value: string;
}

export interface NvsNamespace {
  name: string;
  entries: NvsEntry[];
}

export interface NvsContents {
  namespaces: NvsNamespace[];
}

const PAGE_SIZE = 0x1000;
const ENTRY_SIZE = 32;
const ENTRIES_PER_PAGE = 126;
const FIRST_ENTRY_OFFSET = 64;
const BITMAP_OFFSET = 32;
const PAGE_ACTIVE = 0xfffffffe;
const PAGE_FULL = 0xfffffffc;
const FORMAT_VERSION_2 = 0xfe;
const TYPE_U8 = 0x01;
const TYPE_STRING = 0x21;
const CHUNK_ANY = 0xff;
const MAX_NAME_BYTES = 15;
// The tool moves a string to a new page when it would reach the page's last slot (`>=`, not `>`), and
// gives up if it does not fit a fresh page: so a string gets at most 125 slots, one header + 124 of
// data, NUL terminator included. Longer values crash the tool; we reject them.
const MAX_VALUE_BYTES = 124 * ENTRY_SIZE - 1;
// Namespace indexes are one byte; 0 holds the namespace entries themselves and 255 means "any".
const MAX_NAMESPACES = 254;
const MIN_PARTITION_SIZE = 3 * PAGE_SIZE;
// Not a format limit: a guard against allocating absurd buffers on request. NVS partitions are KiBs.
const MAX_PARTITION_SIZE = 0x1000000;

const utf8 = new TextEncoder();
const hex = (n: number) => `0x${n.toString(16)}`;

// ESP-IDF seeds zlib's crc32 with 0xFFFFFFFF (Python: zlib.crc32(data, 0xFFFFFFFF)).
const nvsCrc = (bytes: Uint8Array) => crc32(bytes, 0xffffffff) >>> 0;

function nameProblem(what: "namespace" | "key", name: unknown): string | undefined {
  if (typeof name !== "string" || name === "") return `a ${what} name must be a non-empty string`;
  if (name.includes("\0")) return `${what} "${name}" contains a NUL character`;
  const bytes = utf8.encode(name).length;
  if (bytes > MAX_NAME_BYTES) return `${what} "${name}" is ${bytes} bytes long; NVS allows at most ${MAX_NAME_BYTES}`;
  return undefined;
}

function valueProblem(key: string, value: unknown): string | undefined {
  if (typeof value !== "string") return `the value of key "${key}" must be a string`;
  if (value.includes("\0")) return `the value of key "${key}" contains a NUL character`;
  const bytes = utf8.encode(value).length;
  if (bytes > MAX_VALUE_BYTES) {
    return `the value of key "${key}" is ${bytes} bytes long; NVS strings are at most ${MAX_VALUE_BYTES} bytes`;
  }
  return undefined;
}

function check(problem: string | undefined, where = ""): void {
  if (problem) throw new Error(where + problem);
}

function checkContents(contents: NvsContents): void {
  if (contents.namespaces.length > MAX_NAMESPACES) {
    throw new Error(`${contents.namespaces.length} namespaces given; NVS allows at most ${MAX_NAMESPACES}`);
  }
  const seen = new Set<string>();
  for (const ns of contents.namespaces) {
    check(nameProblem("namespace", ns.name));
    if (seen.has(ns.name)) throw new Error(`namespace "${ns.name}" is given twice`);
    seen.add(ns.name);
    const keys = new Set<string>();
    for (const { key, value } of ns.entries) {
      check(nameProblem("key", key), `namespace "${ns.name}": `);
      if (keys.has(key)) throw new Error(`namespace "${ns.name}": key "${key}" is given twice`);
      keys.add(key);
      check(valueProblem(key, value), `namespace "${ns.name}": `);
    }
  }
}

/** Why `size` cannot be an NVS partition's size, or null when it can. */
export function partitionSizeProblem(size: number): string | null {
  if (!Number.isInteger(size) || size < MIN_PARTITION_SIZE || size % PAGE_SIZE !== 0) {
    return `the NVS partition size must be a multiple of ${hex(PAGE_SIZE)} and at least ${hex(MIN_PARTITION_SIZE)} bytes (got ${size})`;
  }
  if (size > MAX_PARTITION_SIZE) return `the NVS partition size must be at most ${hex(MAX_PARTITION_SIZE)} bytes (got ${hex(size)})`;
  return null;
}

function checkPartitionSize(size: number): void {
  const problem = partitionSizeProblem(size);
  if (problem) throw new Error(problem);
}

/** A 32-byte item header: namespace index, type, span, chunk index, CRC (filled later), key, 8 data bytes. */
function itemHeader(nsIndex: number, type: number, span: number, key: string): Uint8Array {
  const item = new Uint8Array(ENTRY_SIZE).fill(0xff);
  item.set([nsIndex, type, span, CHUNK_ANY]);
  item.fill(0, 8, 24);
  item.set(utf8.encode(key), 8);
  return item;
}

function sealItem(item: Uint8Array): Uint8Array {
  const covered = new Uint8Array(28);
  covered.set(item.subarray(0, 4));
  covered.set(item.subarray(8), 4);
  new DataView(item.buffer).setUint32(4, nvsCrc(covered), true);
  return item;
}

/**
 * Builds an NVS partition image of `partitionSize` bytes holding the given namespaces and string entries,
 * in order. Throws an Error with a readable message when the input or size is not acceptable.
 */
export function buildNvsImage(contents: NvsContents, partitionSize: number): Uint8Array<ArrayBuffer> {
  checkPartitionSize(partitionSize);
  checkContents(contents);

  const image = new Uint8Array(partitionSize).fill(0xff);
  const view = new DataView(image.buffer);
  // ESP-IDF keeps the last page blank as a spare for its garbage collection.
  const usablePages = partitionSize / PAGE_SIZE - 1;
  let page = 0;
  let slot = 0;

  const startPage = () => {
    const at = page * PAGE_SIZE;
    view.setUint32(at, PAGE_ACTIVE, true);
    view.setUint32(at + 4, page, true);
    image[at + 8] = FORMAT_VERSION_2;
    view.setUint32(at + 28, nvsCrc(image.subarray(at + 4, at + 28)), true);
  };
  const nextPage = () => {
    if (page + 1 >= usablePages) {
      throw new Error(
        `the entries do not fit in a ${hex(partitionSize)}-byte NVS partition (${usablePages} usable pages of 4 KiB); use a larger partition`,
      );
    }
    view.setUint32(page * PAGE_SIZE, PAGE_FULL, true);
    page++;
    slot = 0;
    startPage();
  };
  // Writes whole entries at the current slot and marks each one "written" (2-bit state 0b10) in the bitmap.
  const write = (bytes: Uint8Array, span: number) => {
    image.set(bytes, page * PAGE_SIZE + FIRST_ENTRY_OFFSET + slot * ENTRY_SIZE);
    for (const end = slot + span; slot < end; slot++) {
      image[page * PAGE_SIZE + BITMAP_OFFSET + (slot >> 2)] &= ~(1 << ((slot * 2) & 7));
    }
  };

  startPage();
  contents.namespaces.forEach((ns, i) => {
    const nsIndex = i + 1;
    if (slot >= ENTRIES_PER_PAGE) nextPage();
    const nsItem = itemHeader(0, TYPE_U8, 1, ns.name);
    nsItem[24] = nsIndex;
    write(sealItem(nsItem), 1);

    for (const { key, value } of ns.entries) {
      const text = utf8.encode(value);
      const data = new Uint8Array(text.length + 1); // NUL-terminated, as ESP-IDF stores strings
      data.set(text);
      const dataSlots = Math.ceil(data.length / ENTRY_SIZE);
      // Same rule as the tool: a string never spans pages and never ends on a page's last slot.
      if (slot + 1 + dataSlots >= ENTRIES_PER_PAGE) nextPage();
      const item = itemHeader(nsIndex, TYPE_STRING, 1 + dataSlots, key);
      const itemView = new DataView(item.buffer);
      itemView.setUint16(24, data.length, true);
      itemView.setUint32(28, nvsCrc(data), true);
      write(sealItem(item), 1);
      write(data, dataSlots);
    }
  });
  return image;
}

interface CsvRecord {
  line: number;
  fields: string[];
}

/**
 * RFC 4180 records; like the tool, lines starting with `#` are comments and blank lines are skipped.
 * Not csv-parse: one switch (relax_quotes) decides both a quote inside a plain value (`it's "raw"`, kept as text)
 * and text after a closing quote (`"a"b`, refused with its line), which must be told apart; it also reads a file
 * that mixes LF and CRLF lines wrongly unless told every ending, and numbers a multi-line record by its last line.
 */
function readCsv(text: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let line = 1;
  let i = 0;
  const atLineEnd = () => i >= text.length || text[i] === "\n" || text[i] === "\r";
  while (i < text.length) {
    const start = line;
    if (text[i] === "#" || atLineEnd()) {
      const end = text.indexOf("\n", i);
      i = end === -1 ? text.length : end + 1;
      line++;
      continue;
    }
    const fields: string[] = [];
    for (;;) {
      let field = "";
      if (text[i] === '"') {
        for (i++; ; i++) {
          if (i >= text.length) throw new Error(`line ${start}: a quoted field is never closed`);
          if (text[i] === '"') {
            if (text[i + 1] !== '"') break;
            i++;
          } else if (text[i] === "\n") {
            line++;
          }
          field += text[i];
        }
        i++;
        if (!atLineEnd() && text[i] !== ",") throw new Error(`line ${line}: unexpected text after a closing quote`);
      } else {
        while (!atLineEnd() && text[i] !== ",") field += text[i++];
      }
      fields.push(field);
      if (text[i] !== ",") break;
      i++;
    }
    if (text[i] === "\r") i++;
    if (text[i] === "\n") i++;
    line++;
    records.push({ line: start, fields });
  }
  return records;
}

const COLUMNS = ["key", "type", "encoding", "value"] as const;

/**
 * Parses Espressif's NVS CSV (`key,type,encoding,value`; `name,namespace,,` rows, then
 * `key,data,string,value` rows). Only string data is supported; anything else throws an Error naming the line.
 */
export function parseNvsCsv(text: string): NvsContents {
  const [header, ...rows] = readCsv(text.replace(/^\uFEFF/, ""));
  if (!header) throw new Error("the NVS CSV is empty; it needs the header line key,type,encoding,value");
  const names = header.fields.map((f) => f.trim());
  const column = Object.fromEntries(COLUMNS.map((c) => [c, names.indexOf(c)])) as Record<(typeof COLUMNS)[number], number>;
  if (COLUMNS.some((c) => column[c] < 0)) {
    throw new Error(`line ${header.line}: the header must name the columns key,type,encoding,value`);
  }

  const namespaces: NvsNamespace[] = [];
  for (const { line, fields } of rows) {
    const at = `line ${line}: `;
    if (fields.length > names.length) {
      throw new Error(`${at}${fields.length} fields but the header has ${names.length}; quote values that contain commas`);
    }
    const key = fields[column.key] ?? "";
    const type = (fields[column.type] ?? "").trim();
    if (type === "namespace") {
      check(nameProblem("namespace", key), at);
      if (namespaces.some((ns) => ns.name === key)) {
        throw new Error(`${at}namespace "${key}" appears twice; list all its entries under one namespace row`);
      }
      namespaces.push({ name: key, entries: [] });
      continue;
    }
    if (type === "file") throw new Error(`${at}type "file" is not supported; give the value inline as a data row`);
    if (type !== "data") throw new Error(`${at}unknown type "${type}"; expected "namespace" or "data"`);
    const encoding = (fields[column.encoding] ?? "").trim();
    if (encoding !== "string") {
      throw new Error(`${at}encoding "${encoding}" is not supported; only "string" values are`);
    }
    const value = fields[column.value];
    if (value === undefined) throw new Error(`${at}the value field is missing`);
    const current = namespaces.at(-1);
    if (!current) throw new Error(`${at}key "${key}" comes before any namespace row`);
    check(nameProblem("key", key), at);
    if (current.entries.some((e) => e.key === key)) {
      throw new Error(`${at}key "${key}" appears twice in namespace "${current.name}"`);
    }
    check(valueProblem(key, value), at);
    current.entries.push({ key, value });
  }
  return { namespaces };
}
