import assert from "node:assert/strict";
import { clientAddress } from "./client_address.ts";

Deno.test("clientAddress() distrusts X-Forwarded-For without trusted hops", () => {
  assert.deepEqual(clientAddress("1.2.3.4", "10.0.0.9", 0), {
    clientIp: "10.0.0.9",
    forwardedFor: "10.0.0.9",
  });
});

Deno.test("clientAddress() takes the client N hops left of the socket peer", () => {
  assert.deepEqual(clientAddress("203.0.113.7", "198.51.100.1", 1), {
    clientIp: "203.0.113.7",
    forwardedFor: "203.0.113.7, 198.51.100.1",
  });
  // A client-supplied entry to the left of what the trusted proxy added is not believed.
  assert.equal(clientAddress("6.6.6.6, 203.0.113.7", "198.51.100.1", 1).clientIp, "203.0.113.7");
  assert.equal(
    clientAddress("6.6.6.6, 203.0.113.7, 192.0.2.5", "198.51.100.1", 2).clientIp,
    "203.0.113.7",
  );
  assert.equal(clientAddress("203.0.113.7", "198.51.100.1", 5).clientIp, "203.0.113.7");
  assert.equal(clientAddress(" , ,", "198.51.100.1", 1).clientIp, "198.51.100.1");
});

Deno.test("geo bypass: clientAddress() reads a trusted entry as nginx's realip does, an address or the peer", () => {
  const judged = (entry: string) => clientAddress(entry, "10.0.0.9", 1).clientIp;
  assert.equal(judged("203.0.113.50:4711"), "203.0.113.50"); // Azure Application Gateway
  assert.equal(judged("[2001:db8::1]:4711"), "2001:db8::1");
  assert.equal(judged("[2001:db8::1]"), "2001:db8::1");
  assert.equal(judged("2001:db8::1"), "2001:db8::1");
  assert.equal(judged("unknown"), "10.0.0.9");
  assert.equal(judged("_hidden"), "10.0.0.9");
  assert.equal(judged("1.2.3.4:99999999"), "10.0.0.9");
  // The chain sent upstream keeps the entries as the proxies wrote them.
  assert.equal(
    clientAddress("203.0.113.50:4711", "10.0.0.9", 1).forwardedFor,
    "203.0.113.50:4711, 10.0.0.9",
  );
});

Deno.test("geo bypass: clientAddress() counts trusted hops over entries, not over the empty ones a list may hold", () => {
  // RFC 9110 §5.6.1 lets a list hold empty elements (`a,, b`, a proxy's `, b` on an empty header);
  // counted as hops, they shift which entry is believed and reach the app in X-Forwarded-For.
  assert.deepEqual(clientAddress("203.0.113.7,, 192.0.2.5", "198.51.100.1", 2), {
    clientIp: "203.0.113.7",
    forwardedFor: "203.0.113.7, 192.0.2.5, 198.51.100.1",
  });
  assert.deepEqual(clientAddress(", 203.0.113.7", "198.51.100.1", 1), {
    clientIp: "203.0.113.7",
    forwardedFor: "203.0.113.7, 198.51.100.1",
  });
});

Deno.test("geo bypass: clientAddress() reads a bracketed IPv4 entry as no address (brackets hold IPv6 only)", () => {
  // RFC 3986 brackets hold an IPv6 literal; `[203.0.113.50]` names no address: the peer it is.
  assert.equal(clientAddress("[203.0.113.50]", "10.0.0.9", 1).clientIp, "10.0.0.9");
  assert.equal(clientAddress("[203.0.113.50]:4711", "10.0.0.9", 1).clientIp, "10.0.0.9");
});

Deno.test("geo bypass: clientAddress() reads a bracketed IPv6 entry with a port past 5 digits as no address", () => {
  // As for `1.2.3.4:99999999`: such an entry is no `[v6]:port`, so the peer is the client.
  const judged = (entry: string) => clientAddress(entry, "10.0.0.9", 1).clientIp;
  assert.equal(judged("[2001:db8::1]:65535"), "2001:db8::1");
  assert.equal(judged("[2001:db8::1]:99999999"), "10.0.0.9");
  assert.equal(judged("[2001:db8::1]:"), "10.0.0.9");
});

Deno.test("client IP spoofing: an X-Forwarded-For entry with text before a bracketed address names no client", () => {
  assert.equal(clientAddress("junk[::1]:80", "10.0.0.9", 1).clientIp, "10.0.0.9");
  assert.equal(clientAddress("[::1]:80", "10.0.0.9", 1).clientIp, "::1");
});
