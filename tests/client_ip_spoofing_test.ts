/**
 * Attack: without trusted proxies in front, a client names its own IP address to the app through
 * a header the app reads as the client's address. vestibule replaces X-Forwarded-For and
 * X-Real-IP; the other client-address headers that proxies and CDNs write must not pass either.
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

// Each is read as the client's address by common code: `request-ip` (npm) checks x-client-ip
// first, then cf-connecting-ip, fastly-client-ip, true-client-ip, x-cluster-client-ip,
// x-forwarded, forwarded-for; Rails' RemoteIp reads Client-IP (HTTP_CLIENT_IP); Java snippets
// read Proxy-Client-IP and WL-Proxy-Client-IP.
const CLIENT_ADDRESS_HEADERS = [
  "x-client-ip",
  "client-ip",
  "true-client-ip",
  "cf-connecting-ip",
  "fastly-client-ip",
  "x-cluster-client-ip",
  "x-original-forwarded-for",
  "x-forwarded",
  "forwarded-for",
  "proxy-client-ip",
  "wl-proxy-client-ip",
  "x-originating-ip",
  "x-remote-ip",
  "x-remote-addr",
  "x-envoy-external-address",
  // CGI-style servers read the underscore spelling as the same header.
  "x_client_ip",
  "true_client_ip",
];

function rules(hops: number) {
  return (origin: string) => ({
    regions: { us: { origin } },
    default_region: "us",
    trusted_proxy_hops: hops,
    rules: [{ name: "app", type: "regional" }],
  });
}

Deno.test("client IP spoofing: with trusted_proxy_hops 0 no client-address header reaches the app", async (t) => {
  const us = startUpstream();
  const edge = startVestibule(rules(0)(us.url));
  try {
    for (const name of CLIENT_ADDRESS_HEADERS) {
      await t.step(name, async () => {
        const res = await fetch(`${edge.url}/`, { headers: { [name]: "6.6.6.6" } });
        await res.body?.cancel();
        const got = us.received.at(-1)!.headers;
        assert.equal(got.get("x-forwarded-for"), "127.0.0.1");
        assert.equal(got.get("x-real-ip"), "127.0.0.1");
        assert.equal(got.get(name), null, `${name}: 6.6.6.6 reached the app`);
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("client-address headers a trusted CDN in front writes still reach the app", async () => {
  const us = startUpstream();
  const edge = startVestibule(rules(1)(us.url));
  try {
    const res = await fetch(`${edge.url}/`, {
      headers: { "cf-connecting-ip": "203.0.113.9", "x-forwarded-for": "203.0.113.9" },
    });
    await res.body?.cancel();
    const got = us.received.at(-1)!.headers;
    assert.equal(got.get("cf-connecting-ip"), "203.0.113.9");
    assert.equal(got.get("x-real-ip"), "203.0.113.9");
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("client IP spoofing: X-Forwarded-For names the peer's own address, as Deno.serve hands it", async () => {
  const up = startUpstream();
  const edge = startVestibule(rules(0)(up.url));
  try {
    // Every test client is on loopback; the handler is handed another peer directly.
    const response = await edge.app.fetch(
      new Request("http://app.test/", { headers: { "x-forwarded-for": "203.0.113.9" } }),
      { remoteAddr: { transport: "tcp", hostname: "198.51.100.7", port: 40_000 } },
    );
    await response.body?.cancel();
    assert.equal(response.status, 200);
    assert.equal(up.received[0].headers.get("x-forwarded-for"), "198.51.100.7");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});
