import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { safeRedirectPath } from "../lib/http/redirect-path.ts";

describe("safeRedirectPath", () => {
  it("keeps same-origin relative paths with their query and fragment", () => {
    assert.equal(safeRedirectPath("/devices"), "/devices");
    assert.equal(safeRedirectPath("/devices/12?tab=config#top"), "/devices/12?tab=config#top");
    assert.equal(safeRedirectPath("/"), "/");
    assert.equal(safeRedirectPath("/search?q=a%20b"), "/search?q=a%20b");
  });

  it("falls back to / when there is nothing", () => {
    for (const value of [undefined, null, ""]) assert.equal(safeRedirectPath(value), "/");
  });

  it("rejects absolute, protocol-relative and scripted URLs", () => {
    for (const value of [
      "//evil.example",
      "//evil.example/devices",
      "/\\evil.example",
      "\\\\evil.example",
      "http://evil.example",
      "https://evil.example/devices",
      "javascript:alert(1)",
      "data:text/html,hi",
      "devices",
      "evil.example",
      "/\t/evil.example",
      "/\n/evil.example",
    ]) {
      assert.equal(safeRedirectPath(value), "/", value);
    }
  });

  it("rejects the same tricks percent-encoded, once or twice", () => {
    for (const value of [
      "/%2F%2Fevil.example",
      "/%2fevil.example",
      "%2F%2Fevil.example",
      "/%5Cevil.example",
      "/%5cevil.example",
      "/%252F%252Fevil.example",
      "/%09/evil.example",
      "/%E0%A4%A", // malformed escape
    ]) {
      assert.equal(safeRedirectPath(value), "/", value);
    }
  });

  it("rejects over-long values", () => {
    assert.equal(safeRedirectPath(`/${"a".repeat(5000)}`), "/");
  });

  it("normalises dot segments without leaving the origin", () => {
    assert.equal(safeRedirectPath("/a/../../devices"), "/devices");
    assert.equal(safeRedirectPath("/./devices"), "/devices");
  });
});
