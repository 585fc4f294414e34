import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AppError } from "../lib/errors.ts";
import { assertTrustedOrigin } from "../lib/identity/origin-check.ts";

const trusted = new Set(["https://iot.example.lan", "http://localhost:5173"]);
const request = (method: string, headers: Record<string, string>) => new Request("https://iot.example.lan/api/devices", { method, headers });

function refusal(method: string, headers: Record<string, string>): AppError | null {
  try {
    assertTrustedOrigin(request(method, headers), trusted);
    return null;
  } catch (error) {
    assert.ok(error instanceof AppError, String(error));
    return error;
  }
}

describe("assertTrustedOrigin (cross-site request forgery guard)", () => {
  it("lets changes through from a trusted Origin, whatever Sec-Fetch-Site says", () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
      assert.equal(refusal(method, { origin: "https://iot.example.lan" }), null, method);
    }
    assert.equal(refusal("POST", { origin: "http://localhost:5173", "sec-fetch-site": "cross-site" }), null, "a listed UI elsewhere");
  });

  it("refuses changes from any other Origin with 403 CSRF_ORIGIN_REFUSED naming it", () => {
    for (const origin of ["https://evil.example.lan", "http://iot.example.lan", "https://iot.example.lan:8443", "null", "https://iot.example.lan.evil.test"]) {
      const error = refusal("POST", { origin, "sec-fetch-site": "same-origin" });
      assert.equal(error?.status, 403, origin);
      assert.equal(error.code, "CSRF_ORIGIN_REFUSED");
      assert.ok(error.message.includes(origin), error.message);
      assert.deepEqual(error.details, { origin });
    }
  });

  it("without Origin, accepts only Sec-Fetch-Site: same-origin", () => {
    assert.equal(refusal("POST", { "sec-fetch-site": "same-origin" }), null);
    for (const site of ["same-site", "cross-site", "none"]) assert.equal(refusal("DELETE", { "sec-fetch-site": site })?.status, 403, site);
    const silent = refusal("PUT", {});
    assert.equal(silent?.status, 403);
    assert.match(silent.message, /did not say where it came from/);
    assert.equal(refusal("POST", { referer: "https://iot.example.lan/devices" })?.status, 403, "Referer alone is not enough");
  });

  it("never refuses reads", () => {
    for (const method of ["GET", "HEAD", "OPTIONS"]) assert.equal(refusal(method, { origin: "https://evil.example.lan", "sec-fetch-site": "same-site" }), null, method);
  });
});
