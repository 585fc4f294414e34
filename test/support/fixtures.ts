import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Real ESP-IDF data the tests compare against (test/fixtures/README.md says where each file came from). */
const fixtures = new URL("../fixtures/", import.meta.url);

export const fixturePath = (name: `${"firmware" | "nvs"}/${string}`) => fileURLToPath(new URL(name, fixtures));
export const readFixture = (name: `${"firmware" | "nvs"}/${string}`) => readFileSync(fixturePath(name));
