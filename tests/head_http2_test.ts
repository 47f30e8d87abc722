/**
 * HEAD answers over HTTP/2: Deno.serve sends a HEAD answer's body as DATA on an h2 stream (HTTP/1.1
 * drops it), which clients treat as a protocol error. curl -I --http2, link checkers, uptime
 * monitors and load-balancer checks send HEAD, and browsers and CDNs reach an edge over h2.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import http2 from "node:http2";
import { h2Head } from "./_http2.ts";
import { DEAD_ORIGIN, startUpstream, startVestibule } from "./_servers.ts";

Deno.test("HEAD over HTTP/2: an answer, not a stream reset, for a gzip resource and for vestibule's own errors", async (t) => {
  const gz = new Uint8Array(gzipSync(new TextEncoder().encode("x".repeat(5000))));
  const up = startUpstream((req) => {
    if (new URL(req.url).pathname === "/slow") {
      return new Promise((resolve) => setTimeout(() => resolve(new Response("late")), 1000));
    }
    return new Response(req.method === "HEAD" ? null : gz, {
      headers: {
        "content-encoding": "gzip",
        "content-length": String(gz.length),
        "content-type": "text/plain",
      },
    });
  });
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    upstreams: { gone: { origin: DEAD_ORIGIN } },
    default_region: "us",
    rules: [
      { name: "gone", type: "global", match: { path: "^/gone$" }, upstream: "gone" },
      { name: "slow", type: "regional", match: { path: "^/slow$" }, timeout_ms: 200 },
      { name: "app", type: "regional", match: { path: "^/app/" } },
    ],
  });
  // curl -I --http2, link checkers, uptime monitors and load-balancer checks send HEAD, and
  // browsers and CDNs reach an edge over h2. Deno.serve sends a HEAD answer's body as DATA on
  // an h2 stream (HTTP/1.1 drops it): node resets the stream (CANCEL, 8), curl reports
  // "HTTP/2 stream 1 was not closed cleanly: PROTOCOL_ERROR" and shows no status at all.
  const cases = [
    ["gzip resource re-compressed at the edge", "/app/big.txt", 200],
    ["unreachable origin", "/gone", 502],
    ["origin timeout", "/slow", 504],
    ["no rule", "/nothing", 404],
  ] as const;
  try {
    for (const [name, path, status] of cases) {
      await t.step(`${name}: ${status}`, async () => {
        const answer = await h2Head(edge.port, path, { "accept-encoding": "gzip" });
        assert.deepEqual(answer, { status, closed: http2.constants.NGHTTP2_NO_ERROR });
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});
