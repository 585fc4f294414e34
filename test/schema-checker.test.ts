import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { createSchemaChecker } from "../lib/schema-checker.ts";

const backtracking = JSON.stringify({ properties: { name: { type: "string", pattern: "^(a+)+$" } } });
// Exponential for a backtracking engine: far beyond any budget here, and cut short by the deadline.
const hostileConfig = JSON.stringify({ name: `${"a".repeat(40)}!` });
const plain = JSON.stringify({ type: "object", properties: { deviceName: { type: "string" } } });

describe("schema checker (worker with deadlines)", () => {
  const checker = createSchemaChecker({ compileMs: 5000, checkMs: 200, memoryMb: 64 });
  after(() => checker.close());

  test("a check past its budget is refused, and the next check runs on a fresh worker", async () => {
    const hostile = await checker.checkConfig({ schema: backtracking, config: hostileConfig, modelCode: "m" });
    assert.ok(!hostile.ok);
    assert.match(hostile.message, /schema of model "m" takes too long/);
    assert.deepEqual(hostile.errors.map((error) => error.field), ["config"]);
    assert.match(hostile.errors[0]!.message, /longer than 200 ms/);

    const next = await checker.checkConfig({ schema: backtracking, config: '{"name": "aaa", "deviceName": "Hall"}', modelCode: "m" });
    assert.deepEqual(next, { ok: true, fields: { deviceName: "Hall", deviceEntityId: null, enableOta: null } });
  });

  test("checks queued behind a hostile one are all answered, in order", async () => {
    const results = await Promise.all([
      checker.checkConfig({ schema: plain, config: '{"deviceName": "a"}', modelCode: "m" }),
      checker.checkConfig({ schema: backtracking, config: hostileConfig, modelCode: "m" }),
      checker.checkConfig({ schema: plain, config: '{"deviceName": 5}', modelCode: "m" }),
      checker.checkSchema('{"$ref": "#"}'),
      checker.checkConfig({ schema: null, config: '{"enableOTA": true}', modelCode: "m" }),
    ]);
    assert.deepEqual(results[0], { ok: true, fields: { deviceName: "a", deviceEntityId: null, enableOta: null } });
    assert.equal(results[1]!.ok, false);
    assert.deepEqual(results[2], {
      ok: false,
      message: "Config validation failed: /deviceName must be string",
      errors: [{ field: "config.deviceName", message: "must be string" }],
    });
    assert.match(String(results[3]), /refers to itself without descending into the config/);
    assert.deepEqual(results[4], { ok: true, fields: { deviceName: null, deviceEntityId: null, enableOta: true } });
  });

  test("a config breaking a rule many times lists the first 100 errors", async () => {
    const check = await checker.checkConfig({ schema: '{"items": {"type": "string"}}', config: JSON.stringify(Array(5000).fill(0)), modelCode: "m" });
    assert.ok(!check.ok);
    assert.equal(check.errors.length, 100);
    assert.equal(check.message, "Config validation failed: /0 must be string (and 99 more)");
  });

  test("a schema needing more memory than the worker has is refused", async () => {
    // 2^40 paths through allOf: the errors collected for the empty probe values fill the heap.
    const $defs: Record<string, unknown> = { d40: { type: "object" } };
    for (let i = 0; i < 40; i++) $defs[`d${i}`] = { allOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] };
    const problems = await checker.checkSchema(JSON.stringify({ $ref: "#/$defs/d0", $defs }));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /config_schema is refused: checking and compiling it takes (more than 64 MB of memory|longer than 5000 ms)/);
    assert.deepEqual(await checker.checkSchema(plain), []);
  });

  test("after close, checks fail instead of starting a worker", async () => {
    const closing = createSchemaChecker();
    const pending = assert.rejects(closing.checkSchema(plain), /closed/);
    await closing.close();
    await pending;
    await assert.rejects(closing.checkSchema(plain), /closed/);
  });
});
