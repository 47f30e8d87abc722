/**
 * What a client gets back through the answer path, at its edges: decoded bodies and their Vary,
 * framing and lengths an answer cannot carry, hop-by-hop names, 205, and the Vary of pin_on
 * answers and redirect rules.
 * Real loopback origins and raw sockets, as the other forwarding tests do.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import {
  answerBody,
  answerHead,
  oneRegion,
  rawRequest,
  rawUpstream,
  startUpstream,
  startVestibule,
  twoRegions,
} from "./_servers.ts";

const text = "hello compressed world ".repeat(200);
const gz = new Uint8Array(gzipSync(new TextEncoder().encode(text)));

const get = (port: number, extra = "", method = "GET", path = "/") =>
  rawRequest(port, `${method} ${path} HTTP/1.1\r\nHost: app\r\n${extra}Connection: close\r\n\r\n`);

/** What a client's `method` request gets through vestibule from an origin that answers `raw`. */
async function throughRawOrigin(raw: string, method = "GET"): Promise<string> {
  const up = rawUpstream(() => raw);
  const edge = startVestibule(oneRegion(up.url));
  try {
    return await get(edge.port, "", method);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
}

Deno.test("an upper-case 'Content-Encoding: GZIP' that fetch decoded gets a weak ETag and Vary: Accept-Encoding", async () => {
  const up = startUpstream(() =>
    new Response(gz, {
      headers: { "content-type": "text/plain", "content-encoding": "GZIP", etag: '"v1"' },
    })
  );
  const edge = startVestibule(oneRegion(up.url));
  try {
    // A client that takes br only: vestibule asks the origin with it, fetch decodes the gzip.
    const answer = await get(edge.port, "Accept-Encoding: br\r\n");
    assert.doesNotMatch(answerHead(answer), /content-encoding/);
    assert.equal(answerBody(answer), text);
    // The origin's strong ETag named its gzip bytes; these differ, and a cache must key by coding.
    assert.match(answerHead(answer), /\r\netag: w\/"v1"/);
    assert.match(answerHead(answer), /\r\nvary: accept-encoding/);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("a HEAD answer whose Content-Length is empty is 502, not 'Content-Length: 0'", async () => {
  const answer = await throughRawOrigin(
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \r\nConnection: close\r\n\r\n",
    "HEAD",
  );
  assert.match(answer, /^HTTP\/1\.1 502 /, answer.slice(0, 100));
});

Deno.test("a body vestibule decoded keeps the origin's own Vary beside Accept-Encoding", async (t) => {
  const up = startUpstream(() =>
    new Response(gz, {
      headers: {
        "content-type": "text/plain",
        "content-encoding": "gzip",
        "cache-control": "public, max-age=60",
        vary: "Accept-Language",
      },
    })
  );
  const edge = startVestibule(oneRegion(up.url));
  try {
    for (const acceptEncoding of ["gzip", "br"]) {
      await t.step(`Accept-Encoding: ${acceptEncoding}`, async () => {
        const answer = await get(edge.port, `Accept-Encoding: ${acceptEncoding}\r\n`);
        // Dropped, a shared cache hands the French page to every language.
        const vary = [...answerHead(answer).matchAll(/\r\nvary: ([^\r]*)/g)].map((m) => m[1]).join(
          ", ",
        );
        assert.match(vary, /accept-language/);
        assert.match(vary, /accept-encoding/);
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("'Transfer-Encoding: chunked, gzip' is 502 upstream_invalid, not the chunk framing as the body", async () => {
  const answer = await throughRawOrigin(
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked, gzip\r\n" +
      "Connection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  );
  assert.match(answer, /^HTTP\/1\.1 502 /, JSON.stringify(answer.slice(0, 200)));
  assert.match(answer, /upstream_invalid/);
});

Deno.test("a header the origin's Connection names in mixed case does not reach the client", async () => {
  const answer = await throughRawOrigin(
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: X-Backend-Hop\r\n" +
      "X-Backend-Hop: 10.0.0.7\r\nContent-Length: 2\r\n\r\nok",
  );
  assert.match(answer, /^HTTP\/1\.1 200 /);
  assert.doesNotMatch(answerHead(answer), /x-backend-hop/);
});

Deno.test("a 205 Reset Content without a length reaches the client as 205", async (t) => {
  for (
    const [what, raw] of [
      ["no length", "HTTP/1.1 205 Reset Content\r\nConnection: close\r\n\r\n"],
      [
        "with a Set-Cookie",
        "HTTP/1.1 205 Reset Content\r\nSet-Cookie: a=1\r\nConnection: close\r\n\r\n",
      ],
    ]
  ) {
    await t.step(what, async () => {
      const answer = await throughRawOrigin(raw, "POST");
      assert.match(answer, /^HTTP\/1\.1 205 /, JSON.stringify(answer.slice(0, 200)));
    });
  }
});

Deno.test("a pin_on answer to a request that named its region still names an earlier rule's header in Vary", async () => {
  const page = (region: string) => () =>
    new Response(`switched to ${region}`, { headers: { "cache-control": "public, max-age=300" } });
  const au = startUpstream(page("au"));
  const us = startUpstream(page("us"));
  const beta = startUpstream(() =>
    new Response("beta", { headers: { "cache-control": "public, max-age=300" } })
  );
  const edge = startVestibule(twoRegions(au.url, us.url, {
    upstreams: { beta: { origin: beta.url } },
    rules: [
      { name: "beta", type: "global", match: { headers: { "x-beta": "^1$" } }, upstream: "beta" },
      {
        name: "switch",
        type: "regional",
        match: { path: "^/switch$" },
        region_from: { query: "region" },
        pin_on: { status: "2xx" },
      },
      { name: "app", type: "regional" },
    ],
  }));
  try {
    const res = await fetch(`${edge.url}/switch?region=au`);
    assert.equal(await res.text(), "switched to au");
    assert.match(res.headers.getSetCookie().join("\n"), /vestibule-region=au/);
    // Without it, a shared cache hands this page to the beta testers of the same URL.
    assert.match(res.headers.get("vary") ?? "", /x-beta/, `Vary: ${res.headers.get("vary")}`);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close(), beta.close()]);
  }
});

Deno.test("a 301 redirect rule chosen because an earlier rule's header copy did not match names that copy in Vary", async () => {
  const beta = startUpstream(() =>
    new Response("beta pricing", { headers: { "cache-control": "public, max-age=300" } })
  );
  const edge = startVestibule({
    regions: { us: { origin: "http://127.0.0.1:1" } },
    upstreams: { beta: { origin: beta.url } },
    default_region: "us",
    rules: [
      {
        name: "beta",
        type: "global",
        match: { path: "^/pricing$", headers: { "x-beta": "^1$" } },
        upstream: "beta",
      },
      {
        name: "moved",
        type: "global",
        match: { path: "^/pricing$" },
        redirect: { location: "https://www.example.com/pricing", status: 301 },
      },
    ],
  });
  try {
    // `x_beta: 0` beside `x-beta: 1` makes the beta rule miss. Keyed by x-beta alone, a shared
    // cache would then send every beta tester (x-beta: 1) to the stored 301.
    const res = await fetch(`${edge.url}/pricing`, {
      headers: { "x-beta": "1", "x_beta": "0" },
      redirect: "manual",
    });
    await res.body?.cancel();
    assert.equal(res.status, 301);
    const vary = (res.headers.get("vary") ?? "").split(",").map((n) => n.trim().toLowerCase());
    assert.ok(vary.includes("x_beta"), `Vary: ${res.headers.get("vary")}`);
  } finally {
    await Promise.all([edge.close(), beta.close()]);
  }
});
