/**
 * HTTP/2 requests (h2c with prior knowledge, as a TLS-terminating proxy or a browser over TLS
 * sends them) reach the rules, the upstream and the log as HTTP/1.1 requests do: their host is
 * `:authority`, which Deno.serve puts in the URL and not in the headers.
 */
import assert from "node:assert/strict";
import { h2Request } from "./_http2.ts";
import { rawRequest, startUpstream, startVestibule } from "./_servers.ts";

Deno.test("access log: an HTTP/2 request's host is logged as an HTTP/1.1 request's is", async () => {
  const us = startUpstream();
  const logs: string[] = [];
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  }, { deps: { log: (line) => logs.push(line) } });
  const client = Deno.createHttpClient({ http1: false, http2: true });
  try {
    const h1 = await fetch(`${edge.url}/dashboard`);
    await h1.body?.cancel();
    const h2 = await fetch(`${edge.url}/dashboard`, { client });
    await h2.body?.cancel();
    const [viaH1, viaH2] = logs.map((line) => JSON.parse(line).host);
    assert.equal(viaH1, `127.0.0.1:${edge.port}`);
    // The same browser over TLS (HTTP/2) must not log an empty host.
    assert.equal(viaH2, viaH1);
  } finally {
    client.close();
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("HTTP/2: a host header that contradicts :authority loses to it (RFC 9113 §8.3.1)", async () => {
  const admin = startUpstream();
  const us = startUpstream();
  const logs: string[] = [];
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    upstreams: { admin: { origin: admin.url } },
    default_region: "us",
    rules: [
      { name: "admin", type: "global", match: { host: "^admin\\.example$" }, upstream: "admin" },
      { name: "app", type: "regional" },
    ],
  }, { deps: { log: (line) => logs.push(line) } });
  try {
    // Deno.serve itself reads this request as http://admin.example/x (its request.url).
    const res = await h2Request(edge.port, {
      ":path": "/x",
      ":authority": "admin.example",
      host: "www.example",
    });
    const line = JSON.parse(logs.at(-1)!);
    const got = us.received[0] ?? admin.received[0];
    const outcome = res.status === 400
      ? "refused as malformed"
      : `rule ${line.rule}, X-Forwarded-Host ${got?.headers.get("x-forwarded-host")}`;
    assert.equal(outcome, "rule admin, X-Forwarded-Host admin.example");
  } finally {
    await Promise.all([edge.close(), admin.close(), us.close()]);
  }
});

Deno.test("an absolute-form target's host wins over a Host header naming another (RFC 9112 3.2.2)", async () => {
  const admin = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    upstreams: { admin: { origin: admin.url } },
    default_region: "us",
    rules: [
      { name: "admin", type: "global", match: { host: "^admin\\.example$" }, upstream: "admin" },
      { name: "app", type: "regional" },
    ],
  });
  try {
    // Deno.serve reads this request as http://admin.example/x, as the RFC says a server must.
    await rawRequest(
      edge.port,
      "GET http://admin.example/x HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
    );
    assert.equal(us.received.length, 0, "routed by the Host header");
    assert.equal(admin.received[0].headers.get("x-forwarded-host"), "admin.example");
  } finally {
    await Promise.all([edge.close(), admin.close(), us.close()]);
  }
});
