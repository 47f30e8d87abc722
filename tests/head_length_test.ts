/**
 * HEAD over HTTP/1.1: RFC 9110 §8.6 — a HEAD answer MUST NOT carry a Content-Length other than the
 * length its GET's content would have. Deno.serve writes `Content-Length: 0` for a null body.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { oneRegion, rawRequest, rawUpstream, startUpstream, startVestibule } from "./_servers.ts";
import { OCAP_ENV, OCAP_KEY, ocapRules } from "./_ocap.ts";

/** GET's and HEAD's Content-Length for the same request, and the GET's body. */
async function lengths(url: string, headers: Record<string, string> = {}) {
  const get = await fetch(url, { headers, redirect: "manual" });
  const body = new Uint8Array(await get.arrayBuffer());
  const head = await fetch(url, { method: "HEAD", headers, redirect: "manual" });
  await head.body?.cancel();
  return {
    get: get.headers.get("content-length"),
    head: head.headers.get("content-length"),
    getHeaders: get.headers,
    body,
  };
}

/** A HEAD's length is its GET's, or absent (a GET whose length is unknown): never another. */
function assertHeadFits({ get, head }: { get: string | null; head: string | null }) {
  assert.ok([null, get].includes(head), `HEAD Content-Length ${head}, GET ${get}`);
}

Deno.test("HEAD of vestibule's own paths: the GET's Content-Length, not 0", async (t) => {
  const up = startUpstream();
  const edge = startVestibule(
    {
      regions: { us: { origin: up.url } },
      default_region: "us",
      rules: [{ name: "app", type: "regional", match: { path: "^/app" } }],
    },
    { deps: { metricsToken: "scrape-token" } },
  );
  const cases: Array<[string, string, Record<string, string>]> = [
    ["health", "/_vestibule/health", {}],
    ["metrics, authorized", "/_vestibule/metrics", { authorization: "Bearer scrape-token" }],
    ["metrics, 401", "/_vestibule/metrics", {}],
    ["404 under /_vestibule/", "/_vestibule/nope", {}],
    ["404 no_rule", "/nothing", { accept: "text/plain" }],
  ];
  try {
    for (const [name, path, headers] of cases) {
      await t.step(name, async () => {
        const { get, head } = await lengths(`${edge.url}${path}`, headers);
        assert.ok(get !== null && get !== "0", `GET has a length: ${get}`);
        assert.equal(head, get);
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("HEAD of a resource whose GET streams without a length: no invented Content-Length: 0", async (t) => {
  // A streamed GET (chunked): the upstream's HEAD names no length, as Deno.serve, Node, Rack do.
  const up = startUpstream(() =>
    new Response(ReadableStream.from([new TextEncoder().encode("streamed")]), {
      headers: { "content-type": "text/plain" },
    })
  );
  // Both framings at once, which 6f53ff1 sends down the copy path (the length is dropped).
  const both = rawUpstream(() =>
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100\r\ncontent-type: text/plain\r\n\r\n"
  );
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    upstreams: { both: { origin: both.url } },
    default_region: "us",
    rules: [
      { name: "both", type: "global", match: { path: "^/both$" }, upstream: "both" },
      { name: "app", type: "regional" },
    ],
  });
  try {
    for (const path of ["/app/stream", "/both"]) {
      await t.step(path, async () => {
        const head = await fetch(`${edge.url}${path}`, { method: "HEAD" });
        assert.equal(head.status, 200);
        // The GET's length is unknown (chunked): a HEAD may omit it, never say 0.
        assert.equal(head.headers.get("content-length"), null);
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close(), both.close()]);
  }
});

Deno.test("HEAD through OCAP of a provider resource without a length: no Content-Length: 0", async () => {
  const up = startUpstream(() =>
    new Response(ReadableStream.from([new TextEncoder().encode("streamed")]))
  );
  const kv = await Deno.openKv(":memory:");
  const edge = startVestibule(ocapRules(up.url), { env: OCAP_ENV, deps: { kv } });
  try {
    const got = await lengths(`${edge.url}/_ocap/provider/file`, { "ocap-key": OCAP_KEY });
    assert.equal(new TextDecoder().decode(got.body), "streamed");
    assertHeadFits(got);
  } finally {
    await Promise.all([edge.close(), up.close()]);
    kv.close();
  }
});

Deno.test("HEAD under a pin_on json check of a gzip answer: no Content-Length: 0", async () => {
  const gz = new Uint8Array(
    gzipSync(new TextEncoder().encode(`{"ok":true,"pad":"${"x".repeat(3000)}"}`)),
  );
  const up = startUpstream((req) =>
    new Response(req.method === "HEAD" ? null : gz, {
      headers: {
        "content-encoding": "gzip",
        "content-length": String(gz.length),
        "content-type": "application/json",
      },
    })
  );
  const edge = startVestibule({
    regions: { us: { origin: up.url }, au: { origin: up.url } },
    default_region: "us",
    rules: [{
      name: "switch",
      type: "regional",
      region_from: { query: "region" },
      pin_on: { json: { path: "ok", equals: true } },
    }],
  });
  try {
    const got = await lengths(`${edge.url}/dashboard?region=au`, { "accept-encoding": "gzip" });
    assert.equal(got.getHeaders.get("content-encoding"), "gzip");
    assert.notEqual(got.get, "0");
    // The GET sends gzip bytes; a HEAD's length is either the GET's or absent.
    assertHeadFits(got);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

/** The header fields of a raw answer, names lower-cased, and its status. */
async function answerHead(port: number, method: string, headers: string) {
  const raw = await rawRequest(
    port,
    `${method} /page HTTP/1.1\r\nHost: app.example\r\n${headers}Connection: close\r\n\r\n`,
  );
  const lines = raw.slice(0, raw.indexOf("\r\n\r\n")).split("\r\n");
  const fields = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const name = line.slice(0, line.indexOf(":")).toLowerCase();
    if (name === "date" || name === "connection") continue;
    fields.set(name, line.slice(line.indexOf(":") + 1).trim());
  }
  return { status: Number(lines[0].split(" ")[1]), fields };
}

// RFC 9110 §9.3.2 (a HEAD gets its GET's fields) and §15.4.5 (a 304 carries the 200's ETag), read
// on raw sockets, since `fetch` would decode and hide what was sent.
Deno.test("HEAD and 304 of a gzip page: the GET's Content-Encoding, Content-Length and ETag", async (t) => {
  const gz = new Uint8Array(gzipSync(new TextEncoder().encode("<p>page</p>".repeat(200))));
  const up = startUpstream((req) => {
    const headers = {
      "content-type": "text/html",
      "content-encoding": "gzip",
      "content-length": String(gz.length),
      etag: '"v1"',
      "cache-control": "private, max-age=60",
    };
    // Weak comparison, as If-None-Match is read (RFC 9110 §13.1.2).
    if (req.headers.get("if-none-match")?.replace(/^W\//, "") === '"v1"') {
      return new Response(null, { status: 304, headers });
    }
    return new Response(req.method === "HEAD" ? null : gz, { headers });
  });
  const edge = startVestibule(oneRegion(up.url));
  try {
    for (const acceptEncoding of ["", "Accept-Encoding: gzip\r\n", "Accept-Encoding: br\r\n"]) {
      await t.step(acceptEncoding.trim() || "no Accept-Encoding", async () => {
        const get = await answerHead(edge.port, "GET", acceptEncoding);
        const head = await answerHead(edge.port, "HEAD", acceptEncoding);
        assert.equal(get.status, 200);
        assert.equal(head.status, 200);
        for (const name of ["content-encoding", "content-length", "etag", "vary"]) {
          assert.equal(head.fields.get(name), get.fields.get(name), name);
        }
        if (!acceptEncoding) {
          // Passed as the origin sent it: its bytes, its length, its strong validator.
          assert.equal(get.fields.get("content-length"), String(gz.length));
          assert.equal(get.fields.get("etag"), '"v1"');
        } else {
          // Decoded (and for gzip re-compressed): other bytes, so a weak validator.
          assert.equal(get.fields.get("etag"), 'W/"v1"');
        }
        const etag = get.fields.get("etag")!;
        for (const method of ["GET", "HEAD"]) {
          const notModified = await answerHead(
            edge.port,
            method,
            `${acceptEncoding}If-None-Match: ${etag}\r\n`,
          );
          assert.equal(notModified.status, 304, method);
          assert.equal(notModified.fields.get("etag"), etag, `${method} 304 ETag`);
        }
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("HEAD and GET of an answer whose origin wrote Content-Length twice: that one length, never 0", async (t) => {
  // fetch joins the lines ("2, 2"), which Deno.serve cannot read: a HEAD went out with
  // `Content-Length: 0`, a GET chunked. RFC 9110 §8.6: the same value repeated is that value.
  const cases: [string, string, number, string | undefined][] = [
    ["the same value twice", "Content-Length: 2\r\nContent-Length: 2\r\n", 200, "2"],
    // Nothing else to change (no hop-by-hop Connection header): the answer would go as it is.
    ["two values in one line, kept alive", "Content-Length: 2, 2\r\nKeep: 1\r\n", 200, "2"],
    // Framed by chunks: the lengths do not count, as fetch reads it.
    [
      "chunked beside two different values",
      "Transfer-Encoding: chunked\r\nContent-Length: 3, 4\r\n",
      200,
      undefined,
    ],
    ["two values in one line", "Content-Length: 2, 2\r\n", 200, "2"],
    ["one value with a leading zero", "Content-Length: 02\r\nContent-Length: 2\r\n", 200, "2"],
    ["two different values", "Content-Length: 12\r\nContent-Length: 13\r\n", 502, undefined],
    // One value that is no length: hyper frames a HEAD's answer without reading it.
    ["a length that is no number", "Content-Length: abc\r\n", 502, undefined],
    ["a negative length", "Content-Length: -1\r\n", 502, undefined],
    ["a signed length", "Content-Length: +2\r\n", 502, undefined],
    ["a length with a fraction", "Content-Length: 2.0\r\n", 502, undefined],
  ];
  for (const [what, lengthLines, status, length] of cases) {
    await t.step(what, async () => {
      const up = rawUpstream(() =>
        `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n${lengthLines}${
          lengthLines.includes("Keep") ? "" : "Connection: close\r\n"
        }\r\n${lengthLines.includes("chunked") ? "2\r\nok\r\n0\r\n\r\n" : "ok"}`
      );
      const edge = startVestibule(oneRegion(up.url));
      try {
        for (const method of ["GET", "HEAD"]) {
          const { status: got, fields } = await answerHead(edge.port, method, "");
          if (lengthLines.includes("chunked")) {
            assert.equal(got, status, method);
            continue;
          }
          assert.deepEqual(
            {
              method,
              status: got,
              length: fields.get("content-length"),
              chunked: fields.has("transfer-encoding"),
            },
            {
              method,
              status,
              length: status === 502 ? fields.get("content-length") : length,
              chunked: false,
            },
          );
        }
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
});

Deno.test("revalidation: a 304 or 204 whose Content-Length is no length reaches the client, not a 502", async (t) => {
  // fetch ignores the length of a bodiless status; refusing it turned a cache hit into a 502.
  for (const status of ["304 Not Modified", "204 No Content"]) {
    for (const length of ["abc", "", "-1"]) {
      await t.step(`${status}, Content-Length ${JSON.stringify(length)}`, async () => {
        const up = rawUpstream(() =>
          `HTTP/1.1 ${status}\r\nETag: "v1"\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`
        );
        const edge = startVestibule(oneRegion(up.url));
        try {
          const got = await answerHead(edge.port, "GET", 'If-None-Match: "v1"\r\n');
          assert.equal(got.status, Number(status.slice(0, 3)));
          assert.equal(got.fields.get("etag"), '"v1"');
        } finally {
          await Promise.all([edge.close(), up.close()]);
        }
      });
    }
  }
});
