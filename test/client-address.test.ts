import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clientAddress } from "../lib/http/client-address.ts";
import { addressBlock } from "../lib/ip-address.ts";

const forwardedFor = (value?: string) => new Request("http://iot.test/oauth2/token", { headers: value ? { "x-forwarded-for": value } : {} });

describe("client address", () => {
  it("is the connection's peer unless proxies are trusted", () => {
    assert.equal(clientAddress(forwardedFor("203.0.113.9"), "10.0.0.5", 0), "10.0.0.5", "X-Forwarded-For ignored");
    assert.equal(clientAddress(forwardedFor(), "::ffff:10.0.0.5", 0), "10.0.0.5", "IPv4-mapped IPv6 is the IPv4 address");
    assert.equal(clientAddress(forwardedFor(), null, 0), null);
  });

  it("behind N trusted proxies, is the N-th X-Forwarded-For entry from the right", () => {
    const chain = forwardedFor("198.51.100.66, 203.0.113.9, 10.0.0.7");
    assert.equal(clientAddress(chain, "10.0.0.8", 1), "10.0.0.7");
    assert.equal(clientAddress(chain, "10.0.0.8", 2), "203.0.113.9", "the client's own entry on the left is not believed");
    assert.equal(clientAddress(chain, "10.0.0.8", 9), "198.51.100.66", "fewer entries than hops: the leftmost");
    assert.equal(clientAddress(forwardedFor(), "10.0.0.8", 1), "10.0.0.8", "no header: the peer");
    assert.equal(clientAddress(forwardedFor("not-an-address"), "10.0.0.8", 1), "10.0.0.8");
  });

  it("groups IPv6 clients by /64; IPv4 addresses stand alone", () => {
    assert.equal(addressBlock("203.0.113.9"), "203.0.113.9");
    assert.equal(addressBlock("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
    assert.equal(addressBlock("2001:DB8:1:2::1"), addressBlock("2001:db8:1:2:ffff::9"));
    assert.equal(addressBlock("2001:db8::1"), "2001:db8:0:0::/64");
    assert.equal(addressBlock("fe80::1%eth0"), "fe80:0:0:0::/64");
    assert.equal(addressBlock("::ffff:203.0.113.9"), "203.0.113.9");
  });
});
