/**
 * @module Requests a browser never sends but an attacker or an odd client does, written byte for
 * byte on a socket: what vestibule routes must be what the upstream receives.
 */
import assert from "node:assert/strict";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { explainRequest } from "../lib/explain.ts";
import { parseRules } from "../lib/load_rules.ts";
import { oneRegion, rawRequest, startUpstream, startVestibule } from "./_servers.ts";

Deno.test("method confusion: a lower-case method skips a method rule, yet reaches the app upper-cased", async () => {
  const web = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    upstreams: { website: { origin: web.url } },
    default_region: "us",
    rules: [
      {
        name: "writes",
        type: "global",
        match: { methods: ["POST"], path: "^/api/" },
        upstream: "website",
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    const answer = await rawRequest(
      edge.port,
      "post /api/orders HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 2\r\n" +
        "Connection: close\r\n\r\n{}",
    );
    // nginx's answer: fetch would upper-case `post` for the app, after it skipped the POST rule.
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /bad_method/);
    assert.equal(web.received.length + us.received.length, 0);
  } finally {
    await Promise.all([edge.close(), web.close(), us.close()]);
  }
});

Deno.test("5xx inflation: methods fetch cannot send are the client's error (400/405), not 502 upstream_unavailable", async (t) => {
  const up = startUpstream();
  const lines: string[] = [];
  const edge = startVestibule(oneRegion(up.url), { deps: { log: (l) => lines.push(l) } });
  try {
    const expected = { TRACE: 405, TRACK: 405, get: 400, head: 400, "M-SEARCH": 200 };
    for (const [method, status] of Object.entries(expected)) {
      await t.step(method, async () => {
        const answer = await rawRequest(
          edge.port,
          `${method} /x HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
        );
        assert.equal(answer.split("\r\n")[0].split(" ")[1], String(status));
        assert.doesNotMatch(lines.at(-1)!, /upstream_unavailable/);
      });
    }
    // An open-proxy probe: Deno.serve refuses only an origin-form CONNECT itself.
    await t.step("CONNECT app.example.com:443", async () => {
      const answer = await rawRequest(
        edge.port,
        "CONNECT app.example.com:443 HTTP/1.1\r\nHost: app.example.com:443\r\n" +
          "Accept: application/json\r\nConnection: close\r\n\r\n",
      );
      assert.equal(answer.split("\r\n")[0].split(" ")[1], "405", answer);
      assert.doesNotMatch(lines.at(-1)!, /upstream_unavailable/);
    });
    assert.equal(up.received.filter((r) => r.method !== "M-SEARCH").length, 0);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("scheme spoofing: an absolute-form request target cannot claim https without trusted proxies", async () => {
  const up = startUpstream((req) =>
    new Response(null, { status: 302, headers: { location: `${new URL(req.url).origin}/next` } })
  );
  const edge = startVestibule(oneRegion(up.url)); // trusted_proxy_hops: 0, plain http listener
  try {
    const answer = await rawRequest(
      edge.port,
      "GET https://app.example.com/ HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert.equal(up.received[0].headers.get("x-forwarded-proto"), "http");
    assert.match(answer, /\r\nlocation: http:\/\/app\.example\.com\/next\r\n/i);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("header spoofing: underscore and dot spellings of vestibule's own headers never reach the app (CVE-2024-45614)", async () => {
  // CGI, WSGI and Rack read x_forwarded_for as HTTP_X_FORWARDED_FOR, as they read the real one;
  // PHP reads x.forwarded.for so too (it turns '.' into '_'), behind Caddy or FrankenPHP.
  const up = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: up.url, headers: { "x-origin-secret": "s3cret" } } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  const spoofed = [
    "x_forwarded_for",
    "x_forwarded_host",
    "x_forwarded_proto",
    "x_real_ip",
    "x_request_id",
    "x_forwarded_port",
    "x_forwarded_ssl",
    "front_end_https",
    "x_origin_secret",
    "x.forwarded.for",
    "x.real_ip",
    "x.origin.secret",
  ];
  try {
    const headers = new Headers({ x_custom_thing: "kept", "x.other.thing": "kept" });
    for (const name of spoofed) headers.set(name, "forged");
    const res = await fetch(`${edge.url}/page`, { headers });
    await res.body?.cancel();
    const { headers: got } = up.received[0];
    assert.deepEqual(spoofed.filter((name) => got.has(name)), []);
    assert.equal(got.get("x_custom_thing"), "kept", "other underscore names pass");
    assert.equal(got.get("x.other.thing"), "kept", "other dotted names pass");
    assert.equal(got.get("x-origin-secret"), "s3cret");
    assert.equal(got.get("x-forwarded-for"), "127.0.0.1");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("header spoofing: a configured header named with underscores or dots cannot be sent in its dash spelling", async () => {
  const up = startUpstream();
  const edge = startVestibule({
    regions: {
      us: { origin: up.url, headers: { x_origin_secret: "real", "x.api.token": "real" } },
    },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    const res = await fetch(`${edge.url}/`, {
      headers: { "X-Origin-Secret": "forged", "x-api-token": "forged", "x-other": "kept" },
    });
    await res.body?.cancel();
    const { headers } = up.received[0];
    assert.equal(headers.get("x_origin_secret"), "real");
    assert.equal(headers.get("x-origin-secret"), null, "the client's stand-in reached the app");
    assert.equal(headers.get("x.api.token"), "real");
    assert.equal(headers.get("x-api-token"), null, "the client's stand-in reached the app");
    assert.equal(headers.get("x-other"), "kept");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("target = origin + original path + query: an empty query keeps its '?'", async (t) => {
  // Deno.serve hands the request target over raw in `req.url`, so this records the wire bytes.
  const targets: string[] = [];
  const up = startUpstream((req) => {
    targets.push(req.url.slice(req.url.indexOf("/", "http://".length)));
    return new Response("ok");
  });
  const edge = startVestibule(oneRegion(up.url));
  const forwarded = async (target: string) => {
    await rawRequest(edge.port, `GET ${target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
    return targets.at(-1);
  };
  try {
    await t.step("an empty query keeps its '?'", async () => {
      assert.equal(await forwarded("/cb?"), "/cb?");
    });
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("HEAD of a gzip resource: the answer's headers are GET's, not Content-Length: 0", async () => {
  const page = "x".repeat(5000);
  const up = startUpstream((req) => {
    const gz = gzipSync(new TextEncoder().encode(page));
    return new Response(req.method === "HEAD" ? null : new Uint8Array(gz), {
      headers: {
        "content-encoding": "gzip",
        "content-length": String(gz.length),
        "content-type": "text/plain",
      },
    });
  });
  const edge = startVestibule(oneRegion(up.url));
  try {
    const head = (await rawRequest(
      edge.port,
      "HEAD /big.txt HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    )).toLowerCase();
    const get = (await rawRequest(
      edge.port,
      "GET /big.txt HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    )).toLowerCase();
    assert.match(get, /\r\ncontent-encoding: gzip\r\n/);
    assert.doesNotMatch(head, /\r\ncontent-length: 0\r\n/, "HEAD claims an empty body");
    assert.match(head, /\r\ncontent-encoding: gzip\r\n/, "HEAD and GET disagree on the encoding");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("HEAD of a gzip 404 or 410 page: the answer's headers are GET's, not Content-Length: 0", async (t) => {
  const gz = new Uint8Array(gzipSync(new TextEncoder().encode("<h1>Not here</h1>".repeat(300))));
  const up = startUpstream((req) =>
    new Response(req.method === "HEAD" ? null : gz, {
      status: Number(new URL(req.url).pathname.slice(1)),
      headers: {
        "content-encoding": "gzip",
        "content-length": String(gz.length),
        "content-type": "text/html",
      },
    })
  );
  const edge = startVestibule(oneRegion(up.url));
  const head = async (method: string, status: number) =>
    (await rawRequest(
      edge.port,
      `${method} /${status} HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n`,
    )).toLowerCase().split("\r\n\r\n")[0];
  try {
    for (const status of [404, 410]) {
      await t.step(String(status), async () => {
        const get = await head("GET", status);
        const answer = await head("HEAD", status);
        assert.match(get, /\r\ncontent-encoding: gzip\r\n/);
        assert.match(answer, /\r\ncontent-encoding: gzip\r\n/);
        assert.doesNotMatch(answer, /\r\ncontent-length: 0\r\n/, "HEAD claims an empty body");
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("GET with a body: refused with 400, not forwarded without it; a declared empty one goes on", async () => {
  const up = startUpstream();
  const edge = startVestibule(oneRegion(up.url));
  try {
    const answer = await rawRequest(
      edge.port,
      "GET /index/_search HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 13\r\n" +
        'Connection: close\r\n\r\n{"size":1000}',
    );
    // fetch cannot send it; dropping it would hand the app another request.
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /body_not_allowed/);
    assert.equal(up.received.length, 0);
    // Some HTTP clients declare an empty body on every GET: that is no body, and it goes on.
    const empty = await rawRequest(
      edge.port,
      "GET /index HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert.match(empty, /^HTTP\/1\.1 200 /);
    assert.deepEqual(up.received.map((r) => [r.method, r.path, r.body.byteLength]), [
      ["GET", "/index", 0],
    ]);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("HEAD of a resource fetch decodes: the same Content-Encoding, ETag and Vary as GET", async () => {
  const br = new Uint8Array(brotliCompressSync(new TextEncoder().encode("x".repeat(5000))));
  const up = startUpstream((req) =>
    new Response(req.method === "HEAD" ? null : br, {
      headers: { "content-encoding": "br", "content-length": String(br.length), etag: '"v1"' },
    })
  );
  const edge = startVestibule(oneRegion(up.url));
  try {
    const headers = { "accept-encoding": "gzip, br" };
    const get = await fetch(`${edge.url}/page`, { headers });
    await get.body?.cancel();
    const head = await fetch(`${edge.url}/page`, { method: "HEAD", headers });
    for (const name of ["content-encoding", "etag", "vary"]) {
      assert.equal(head.headers.get(name), get.headers.get(name), name);
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("a '?' inside a fragment of the target is no query, upstream or in a redirect", async (t) => {
  const targets: string[] = [];
  const up = startUpstream((req) => {
    targets.push(req.url.slice(req.url.indexOf("/", "http://".length)));
    return new Response("ok");
  });
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [
      {
        name: "help",
        type: "global",
        match: { path: "^/help/(.*)$" },
        redirect: { location: "https://help.example.com/$1" },
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    await t.step("forwarded", async () => {
      await rawRequest(edge.port, "GET /a#b?c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
      assert.equal(targets.at(-1), "/a");
    });
    await t.step("redirect", async () => {
      const answer = await rawRequest(
        edge.port,
        "GET /help/a#x?next=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      );
      assert.match(answer, /\r\nlocation: https:\/\/help\.example\.com\/a\r\n/i);
    });
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("own-path disguise: dot segments, escapes or another method never route /_vestibule/ upstream, and explain agrees", async (t) => {
  const up = startUpstream();
  const lines: string[] = [];
  const rules = oneRegion(up.url);
  const edge = startVestibule(rules, { deps: { log: (l) => lines.push(l) } });
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  const cases: [method: string, target: string, status: number][] = [
    ["GET", "/_vestibule/health", 200],
    ["GET", "/%5Fvestibule/health", 200],
    ["GET", "/a/../_vestibule/health", 200],
    ["HEAD", "/_vestibule/health", 200],
    ["POST", "/_vestibule/health", 404],
    ["DELETE", "/_vestibule/metrics", 404],
    ["GET", "/_vestibule/other", 404],
    ["GET", "/a/../%5fvestibule/other", 404],
  ];
  try {
    for (const [method, target, status] of cases) {
      await t.step(`${method} ${target}`, async () => {
        const body = method === "POST" ? "Content-Length: 1\r\n\r\nx" : "\r\n";
        const answer = await rawRequest(
          edge.port,
          `${method} ${target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n${body}`,
        );
        assert.equal(answer.split("\r\n")[0].split(" ")[1], String(status), answer);
        assert.equal(up.received.length, 0, "no request reached the upstream");
        const explained = await explainRequest({ method, url: target }, config);
        assert.equal(explained.servedBy, "vestibule");
        assert.equal(explained.rule, undefined);
      });
    }
    await t.step("the access log shows the path as routed, escapes kept", async () => {
      await rawRequest(
        edge.port,
        "GET /a/../b%C2%85%3A%41 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      );
      assert.equal(up.received.at(-1)?.path, "/b%C2%85%3A%41");
      assert.equal(JSON.parse(lines.at(-1)!).path, "/b%C2%85%3AA");
    });
    await t.step(
      "a Host that breaks the URL: refused, its path logged with escapes kept",
      async () => {
        const answer = await rawRequest(
          edge.port,
          "GET /caf%C3%A9%20x HTTP/1.1\r\nHost: a:99999\r\nConnection: close\r\n\r\n",
        );
        assert.match(answer, /^HTTP\/1\.1 400 /);
        const entry = JSON.parse(lines.at(-1)!);
        assert.deepEqual([entry.error, entry.path], ["bad_host", "/caf%C3%A9%20x"]);
      },
    );
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("GET with a chunked body: refused with 400, not forwarded without it", async () => {
  const up = startUpstream();
  const edge = startVestibule(oneRegion(up.url));
  try {
    // No Content-Length: the body is framed by chunks, which fetch cannot send on a GET either.
    const answer = await rawRequest(
      edge.port,
      "GET /index/_search HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n" +
        'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nd\r\n{"size":1000}\r\n0\r\n\r\n',
    );
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /body_not_allowed/);
    assert.equal(up.received.length, 0);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("a DELETE that declares no body reaches the app with none, not as a chunked upload (411 from strict servers)", async () => {
  const up = startUpstream();
  const edge = startVestibule(oneRegion(up.url));
  try {
    // `curl -X DELETE`, a CORS preflight: no Content-Length, no Transfer-Encoding (RFC 9112 §6.3).
    for (const method of ["DELETE", "OPTIONS"]) {
      await rawRequest(
        edge.port,
        `${method} /item/7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
      );
      const { headers } = up.received.at(-1)!;
      assert.deepEqual(
        [method, headers.get("transfer-encoding"), headers.get("content-length")],
        [method, null, null],
      );
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("httpoxy: a client's Proxy header never reaches an upstream, and explain says why", async () => {
  // CGI, FastCGI and WSGI servers hand `Proxy` to the app as HTTP_PROXY (CVE-2016-5385): its own
  // outgoing calls, with their tokens, would go through the client's proxy.
  const us = startUpstream();
  const rules = oneRegion(us.url);
  const edge = startVestibule(rules);
  try {
    for (const name of ["Proxy", "proxy", "PROXY"]) {
      const answer = await rawRequest(
        edge.port,
        `GET /x HTTP/1.1\r\nHost: app.example\r\n${name}: http://evil.example:8080\r\nConnection: close\r\n\r\n`,
      );
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.equal(us.received.at(-1)!.headers.get("proxy"), null, `${name} reached the region`);
    }
    const explained = await explainRequest({
      method: "GET",
      url: "http://app.example/x",
      headers: [["Proxy", "http://evil.example:8080"]],
    }, parseRules(JSON.stringify(rules), { env: () => undefined }));
    assert.deepEqual(explained.targets[0].forward.headers.stripped, [
      { name: "proxy", reason: "httpoxy: CGI servers hand it to the app as HTTP_PROXY" },
    ]);
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});
