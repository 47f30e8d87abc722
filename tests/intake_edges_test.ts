/**
 * @module Request intake at its edges: absolute-form targets whose host part carries a query or
 * userinfo (never logged), a trusted proxy's odd X-Forwarded-Host and -Proto, a request with no
 * peer address, debug headers on a global rule, and an Upgrade that only resembles WebSocket.
 */
import assert from "node:assert/strict";
import {
  oneRegion,
  rawRequest,
  startUpstream,
  startVestibule,
  type TestServer,
} from "./_servers.ts";

/** vestibule with `rules` for one recording upstream, its access lines collected. */
async function withEdge(
  rules: (origin: string) => unknown,
  fn: (edge: ReturnType<typeof startVestibule>, lines: string[], up: TestServer) => Promise<void>,
) {
  const up = startUpstream();
  const lines: string[] = [];
  const edge = startVestibule(rules(up.url), { deps: { log: (l) => lines.push(l) } });
  try {
    await fn(edge, lines, up);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
}

Deno.test("secret leak: the access log's host never carries the query of an absolute-form target", () =>
  withEdge((o) => oneRegion(o), async (edge, lines) => {
    const answer = await rawRequest(
      edge.port,
      "GET http://h:99999?token=SECRET1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 400/);
    assert.equal(lines.length, 1);
    assert.doesNotMatch(lines[0], /SECRET1/, lines[0]);
    assert.equal(JSON.parse(lines[0]).host, "h:99999");
  }));

Deno.test("secret leak: the access log's host never carries userinfo of an absolute-form target", () =>
  withEdge((o) => oneRegion(o), async (edge, lines) => {
    const answer = await rawRequest(
      edge.port,
      "GET http://user:pw@SECRET2@h:99999/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 400/);
    assert.equal(lines.length, 1);
    assert.doesNotMatch(lines[0], /SECRET2|pw/, lines[0]);
  }));

Deno.test("debug headers name no region for a global rule", () =>
  withEdge((o) => ({
    regions: { us: { origin: o } },
    upstreams: { web: { origin: o } },
    default_region: "us",
    debug_headers: true,
    rules: [{ name: "site", type: "global", upstream: "web" }],
  }), async (edge) => {
    const res = await fetch(`${edge.url}/about`);
    await res.body?.cancel();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-vestibule-rule"), "site");
    assert.equal(res.headers.get("x-vestibule-region"), null);
  }));

Deno.test("a trusted proxy's X-Forwarded-Host that is no host is not the logged host", () =>
  withEdge((o) => oneRegion(o, { trusted_proxy_hops: 1 }), async (edge, lines) => {
    const answer = await rawRequest(
      edge.port,
      "GET /_vestibule/nope HTTP/1.1\r\nHost: edge.example\r\nX-Forwarded-Host: not a host\r\n" +
        "Connection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 404/);
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]).host, "edge.example");
  }));

Deno.test("a trusted proxy's X-Forwarded-Proto is read in any letter case", () =>
  withEdge((o) => oneRegion(o, { trusted_proxy_hops: 1 }), async (edge, _, up) => {
    const res = await fetch(`${edge.url}/x`, { headers: { "x-forwarded-proto": "HTTPS" } });
    await res.body?.cancel();
    assert.equal(res.status, 200);
    assert.equal(up.received[0].headers.get("x-forwarded-proto"), "https");
  }));

Deno.test("a request without a peer address (a Unix socket) is forwarded as from loopback", () =>
  withEdge((o) => oneRegion(o), async (edge, _, up) => {
    const res = await edge.app.fetch(new Request("http://app.example/x"));
    await res.body?.cancel();
    assert.equal(res.status, 200);
    assert.equal(up.received[0].headers.get("x-forwarded-for"), "127.0.0.1");
  }));

Deno.test("an Upgrade naming another protocol that contains 'websocket' is a plain GET", () =>
  withEdge((o) => oneRegion(o), async (edge) => {
    const answer = await rawRequest(
      edge.port,
      "GET /ws HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket-next\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
        "Connection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200/, answer.split("\r\n")[0]);
  }));
