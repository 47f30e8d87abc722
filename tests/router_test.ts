/** End-to-end: real upstreams on loopback, vestibule in front, assertions on both sides. */
import assert from "node:assert/strict";
import { parseRules } from "../lib/load_rules.ts";
import { explainRequest } from "../lib/explain.ts";
import { brotliCompressSync, gzipSync } from "node:zlib";
import {
  DEAD_ORIGIN,
  firstAnswer,
  startUpstream,
  startVestibule,
  type TestServer,
} from "./_servers.ts";

const PIN = "__Host-vestibule-region";

async function withStack(
  fn: (s: { au: TestServer; us: TestServer; web: TestServer; edge: TestServer }) => Promise<void>,
  options: {
    rules?: unknown[];
    extra?: Record<string, unknown>;
    handlers?: Partial<Record<"au" | "us" | "web", (req: Request) => Response | Promise<Response>>>;
  } = {},
) {
  const au = startUpstream(options.handlers?.au);
  const us = startUpstream(options.handlers?.us);
  const web = startUpstream(options.handlers?.web);
  const edge = startVestibule({
    regions: {
      au: { origin: au.url, headers: { "x-origin-secret": "au-secret" } },
      us: { origin: us.url },
    },
    upstreams: { website: { origin: web.url } },
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { AU: "au", NZ: "au" } },
    forward_cookies: ["csrftoken"],
    rules: options.rules ?? [
      {
        name: "website",
        type: "global",
        match: { path: "^/(about|pricing)(/.*)?$" },
        upstream: "website",
      },
      {
        name: "old-help",
        type: "global",
        match: { path: "^/help/(.*)$" },
        redirect: { location: "https://help.example.com/$1", status: 301 },
      },
      {
        name: "join",
        type: "regional",
        match: {
          methods: ["POST"],
          path: "^/graphql$",
          body: { json: { operationName: "JoinClass" } },
        },
      },
      { name: "api", type: "regional", match: { path: "^/api/" } },
      { name: "app", type: "regional", match: { path: "^/" } },
    ],
    ...options.extra,
  });
  try {
    await fn({ au, us, web, edge });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close(), web.close()]);
  }
}

Deno.test("regional route: a pinned browser reaches its region with every cookie but the pin", () =>
  withStack(async ({ au, us, edge }) => {
    const res = await fetch(`${edge.url}/dashboard/?tab=1&x=%20y`, {
      headers: { cookie: `sessionid=s1; ${PIN}=au; csrftoken=c1; other=o`, "x-custom": "kept" },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(us.received.length, 0);
    assert.equal(au.received.length, 1);
    const got = au.received[0];
    assert.equal(got.method, "GET");
    assert.equal(got.path, "/dashboard/");
    assert.equal(got.query, "?tab=1&x=%20y");
    assert.equal(got.headers.get("cookie"), "sessionid=s1; csrftoken=c1; other=o");
    assert.equal(got.headers.get("host"), new URL(au.url).host);
    assert.equal(got.headers.get("x-forwarded-host"), new URL(edge.url).host);
    assert.equal(got.headers.get("x-forwarded-proto"), "http");
    assert.equal(got.headers.get("x-forwarded-for"), "127.0.0.1");
    assert.equal(got.headers.get("x-origin-secret"), "au-secret");
    assert.equal(got.headers.get("x-custom"), "kept");
    assert.equal(
      res.headers.get("set-cookie"),
      null,
      "a regional answer never sets the pin by itself",
    );
  }));

Deno.test("forwarding: a client cannot forge the origin's configured headers (secret spoofing)", () =>
  withStack(async ({ au, edge }) => {
    const res = await fetch(`${edge.url}/`, {
      headers: { cookie: `${PIN}=au`, "x-origin-secret": "forged", "X-Origin-Secret2": "kept" },
    });
    await res.body?.cancel();
    const got = au.received[0].headers;
    assert.equal(got.get("x-origin-secret"), "au-secret", "one value: the configured one");
    assert.equal(got.get("x-origin-secret2"), "kept");
  }));

Deno.test("regional route: the pin header wins over the pin cookie and neither is forwarded", () =>
  withStack(async ({ au, us, edge }) => {
    const res = await fetch(`${edge.url}/`, {
      headers: { "x-vestibule-region": "US", cookie: `${PIN}=au; sessionid=s` },
    });
    await res.body?.cancel();
    assert.equal(au.received.length, 0);
    assert.equal(us.received.length, 1);
    assert.equal(us.received[0].headers.get("x-vestibule-region"), null);
    assert.equal(us.received[0].headers.get("cookie"), "sessionid=s");
  }));

Deno.test("regional route: without a pin the region is assumed from geo, else the default, and only whitelisted cookies go", async (t) => {
  await withStack(async ({ au, us, edge }) => {
    await t.step("geo header AU → au", async () => {
      const res = await fetch(`${edge.url}/x`, {
        headers: { "cf-ipcountry": "au", cookie: "sessionid=s; csrftoken=c" },
      });
      await res.body?.cancel();
      assert.equal(au.received.length, 1);
      assert.equal(au.received[0].headers.get("cookie"), "csrftoken=c");
      assert.equal(res.headers.get("set-cookie"), null, "an assumed region is never pinned");
    });
    await t.step("unmapped country → default us", async () => {
      const res = await fetch(`${edge.url}/x`, { headers: { "cf-ipcountry": "FR" } });
      await res.body?.cancel();
      assert.equal(us.received.length, 1);
    });
    await t.step("an unknown pin value is ignored", async () => {
      const res = await fetch(`${edge.url}/x`, {
        headers: { cookie: `${PIN}=eu; sessionid=s`, "x-vestibule-region": "mars" },
      });
      await res.body?.cancel();
      assert.equal(us.received.length, 2);
      assert.equal(us.received[1].headers.get("cookie"), null);
      assert.equal(us.received[1].headers.get("x-vestibule-region"), null);
    });
  });
});

Deno.test("regional route: malformed Cookie headers are filtered, not fatal", () =>
  withStack(async ({ au, edge }) => {
    const res = await fetch(`${edge.url}/`, {
      headers: { cookie: `=; ;;garbage; csrftoken=ab"c; ${PIN}=au; =orphan; sessionid=%ZZ; a=b=c` },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(au.received.length, 1);
    assert.equal(au.received[0].headers.get("cookie"), 'csrftoken=ab"c; sessionid=%ZZ; a=b=c');
  }));

Deno.test("forwarding: an incoming X-Forwarded-For is replaced unless trusted proxy hops are configured", async (t) => {
  await t.step("no trusted hops: replaced", () =>
    withStack(async ({ us, edge }) => {
      const res = await fetch(`${edge.url}/`, {
        headers: {
          "x-forwarded-for": "6.6.6.6",
          "x-forwarded-host": "evil.test",
          forwarded: "for=6.6.6.6",
        },
      });
      await res.body?.cancel();
      const h = us.received[0].headers;
      assert.equal(h.get("x-forwarded-for"), "127.0.0.1");
      assert.equal(h.get("x-forwarded-host"), new URL(edge.url).host);
      assert.equal(h.get("forwarded"), null);
    }));
  await t.step("one trusted hop: chain kept and extended", () =>
    withStack(async ({ us, edge }) => {
      const res = await fetch(`${edge.url}/`, {
        headers: { "x-forwarded-for": "203.0.113.9, 198.51.100.1" },
      });
      await res.body?.cancel();
      assert.equal(
        us.received[0].headers.get("x-forwarded-for"),
        "203.0.113.9, 198.51.100.1, 127.0.0.1",
      );
    }, { extra: { trusted_proxy_hops: 1 } }));
});

Deno.test("forwarding: hop-by-hop headers are dropped both ways, including those Connection names", () =>
  withStack(async ({ us, edge }) => {
    const res = await fetch(`${edge.url}/`, {
      headers: {
        connection: "x-hop, keep-alive",
        "x-hop": "1",
        "keep-alive": "timeout=5",
        te: "trailers",
        "x-end": "2",
      },
    });
    await res.body?.cancel();
    const h = us.received[0].headers;
    assert.equal(h.get("x-hop"), null);
    assert.equal(h.get("te"), null);
    assert.equal(h.get("x-end"), "2");
    assert.equal(res.headers.get("x-upstream-hop"), null);
    assert.equal(res.headers.get("x-upstream-end"), "kept");
  }, {
    handlers: {
      us: () =>
        new Response("ok", {
          headers: {
            connection: "x-upstream-hop",
            "x-upstream-hop": "1",
            "x-upstream-end": "kept",
            "set-cookie": "a=1",
          },
        }),
    },
  }));

Deno.test("forwarding: redirects are passed to the client, Location and cookie Domain point back at the public host", () =>
  withStack(async ({ us, edge }) => {
    const res = await fetch(`${edge.url}/go`, { redirect: "manual" });
    await res.body?.cancel();
    assert.equal(us.received.length, 1, "the upstream redirect was not followed");
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), `${edge.url}/next?a=1`);
    const edgeHost = new URL(edge.url).hostname;
    assert.deepEqual(res.headers.getSetCookie(), [
      `sessionid=s; Path=/; Domain=${edgeHost}; HttpOnly`,
      "csrftoken=c; Path=/",
      "other=o; Domain=elsewhere.test",
    ]);
  }, {
    handlers: {
      us: (req) => {
        const origin = new URL(req.url).origin;
        const headers = new Headers({ location: `${origin}/next?a=1` });
        headers.append(
          "set-cookie",
          `sessionid=s; Path=/; Domain=${new URL(req.url).hostname}; HttpOnly`,
        );
        headers.append("set-cookie", "csrftoken=c; Path=/");
        headers.append("set-cookie", "other=o; Domain=elsewhere.test");
        return new Response(null, { status: 302, headers });
      },
    },
  }));

Deno.test("global route: proxies to the upstream with whitelisted cookies only", () =>
  withStack(async ({ web, au, us, edge }) => {
    const res = await fetch(`${edge.url}/pricing/teams?x=1`, {
      headers: { cookie: `sessionid=s; csrftoken=c; ${PIN}=au` },
    });
    assert.deepEqual(await res.json(), { path: "/pricing/teams" });
    assert.equal(au.received.length + us.received.length, 0);
    assert.equal(web.received[0].query, "?x=1");
    assert.equal(web.received[0].headers.get("cookie"), "csrftoken=c");
  }));

Deno.test("global route: a redirect substitutes path groups and keeps the query", async () => {
  await withStack(async ({ edge }) => {
    const res = await fetch(`${edge.url}/help/billing/refunds?lang=fr`, { redirect: "manual" });
    await res.body?.cancel();
    assert.equal(res.status, 301);
    assert.equal(res.headers.get("location"), "https://help.example.com/billing/refunds?lang=fr");
  });
});

Deno.test("no rule matched: 404 no_rule as JSON or plain text by Accept", () =>
  withStack(async ({ edge }) => {
    let res = await fetch(`${edge.url}/nothing`, { headers: { accept: "application/json" } });
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), {
      error: "no_rule",
      message: "No rule matches GET /nothing",
    });
    res = await fetch(`${edge.url}/nothing`, { headers: { accept: "text/html" } });
    assert.equal(res.status, 404);
    assert.equal(res.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.match(await res.text(), /^404 no_rule: /);
  }, { rules: [{ name: "only", type: "regional", match: { path: "^/only$" } }] }));

Deno.test("body matcher: the body is read once and the same bytes reach the upstream", async (t) => {
  await withStack(async ({ us, edge }) => {
    await t.step("matching JSON body", async () => {
      const body = '{"operationName":"JoinClass","variables":{"code":"é"}}';
      const res = await fetch(`${edge.url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-vestibule-region": "us" },
        body,
      });
      await res.body?.cancel();
      assert.equal(res.headers.get("x-vestibule-rule"), "join");
      assert.deepEqual(us.received.at(-1)!.body, new TextEncoder().encode(body));
    });
    await t.step("invalid JSON body: no match, no crash, bytes intact", async () => {
      const body = '{"operationName": "JoinClass",';
      const res = await fetch(`${edge.url}/graphql`, { method: "POST", body });
      await res.body?.cancel();
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-vestibule-rule"), "app");
      assert.equal(new TextDecoder().decode(us.received.at(-1)!.body), body);
    });
    await t.step("a body over the limit: 413 body_too_large, nothing forwarded", async () => {
      const before = us.received.length;
      const res = await fetch(`${edge.url}/graphql`, {
        method: "POST",
        body: "x".repeat(2048),
        headers: { accept: "application/json" },
      });
      assert.equal(res.status, 413);
      assert.equal((await res.json()).error, "body_too_large");
      assert.equal(us.received.length, before);
    });
    await t.step("a streamed body over the limit without Content-Length: 413 too", async () => {
      const stream = new ReadableStream({
        start(c) {
          for (let i = 0; i < 4; i++) c.enqueue(new Uint8Array(1000));
          c.close();
        },
      });
      const res = await fetch(`${edge.url}/graphql`, { method: "POST", body: stream });
      assert.equal(res.status, 413);
      await res.body?.cancel();
    });
  }, { extra: { body_limit_bytes: 1024, debug_headers: true } });
});

Deno.test("upstream failures: refused → 502 upstream_unavailable, hanging → 504 upstream_timeout", async () => {
  const hanging = Promise.withResolvers<void>();
  const slow = startUpstream(async () => {
    await hanging.promise;
    return new Response("late");
  });
  const edge = startVestibule({
    regions: {
      dead: { origin: DEAD_ORIGIN },
      slow: { origin: slow.url, timeout_ms: 500 },
    },
    default_region: "dead",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    let res = await fetch(`${edge.url}/`, { headers: { accept: "application/json" } });
    assert.equal(res.status, 502);
    assert.equal((await res.json()).error, "upstream_unavailable");
    const started = performance.now();
    res = await fetch(`${edge.url}/`, {
      headers: { accept: "application/json", "x-vestibule-region": "slow" },
    });
    const elapsed = performance.now() - started;
    assert.equal(res.status, 504);
    assert.deepEqual(await res.json(), {
      error: "upstream_timeout",
      message: 'Upstream "slow" did not answer within 500 ms',
    });
    // Tight enough that a deadline of twice the timeout fails, loose enough for a busy CI.
    assert.ok(elapsed >= 490 && elapsed < 900, `answered after ${elapsed} ms`);
  } finally {
    hanging.resolve();
    await Promise.all([edge.close(), slow.close()]);
  }
});

Deno.test("compression: a byte range of a gzip file reaches the client as exactly those bytes", async () => {
  const gz = new Uint8Array(
    gzipSync(new TextEncoder().encode(Array.from({ length: 300 }, (_, i) => `${i}:`).join(""))),
  );
  const up = startUpstream((req) => {
    const range = req.headers.get("range")?.match(/^bytes=(\d+)-(\d+)$/);
    if (!range) return new Response("expected a range", { status: 400 });
    const [start, end] = [Number(range[1]), Number(range[2])];
    // A static file server sends the stored gzip bytes whatever Accept-Encoding says.
    return new Response(gz.slice(start, end + 1), {
      status: 206,
      headers: {
        "content-encoding": "gzip",
        "content-range": `bytes ${start}-${end}/${gz.length}`,
      },
    });
  });
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
    await conn.write(new TextEncoder().encode(
      "GET /file.gz HTTP/1.1\r\nHost: app\r\nAccept-Encoding: gzip\r\nRange: bytes=10-59\r\n" +
        "Connection: close\r\n\r\n",
    ));
    const raw = new Uint8Array(await new Response(conn.readable).arrayBuffer());
    const text = new TextDecoder("latin1").decode(raw);
    const headEnd = text.indexOf("\r\n\r\n");
    const head = text.slice(0, headEnd);
    assert.match(head, /^HTTP\/1\.1 206/);
    assert.match(head, /\r\ncontent-range: bytes 10-59\/\d+\r\n/i);
    assert.match(head, /\r\ncontent-length: 50\r\n/i, "passed through, not re-compressed");
    assert.deepEqual(raw.subarray(headEnd + 4), gz.slice(10, 60));
    assert.equal(up.received[0].headers.get("accept-encoding"), "identity");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("compression: a gzip upstream answer reaches the client with headers that agree with its bytes", async (t) => {
  const text = "hello compressed world ".repeat(200);
  const gz = new Uint8Array(gzipSync(new TextEncoder().encode(text)));
  const br = new Uint8Array(brotliCompressSync(new TextEncoder().encode(text)));
  const rawGet = async (port: number, acceptEncoding?: string, extra = "") => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const ae = (acceptEncoding ? `Accept-Encoding: ${acceptEncoding}\r\n` : "") + extra;
    await conn.write(
      new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: x\r\n${ae}Connection: close\r\n\r\n`),
    );
    const raw = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
    const [head, ...rest] = raw.split("\r\n\r\n");
    return { head: head.toLowerCase(), body: rest.join("\r\n\r\n") };
  };
  await withStack(async ({ edge, us }) => {
    await t.step("client accepts gzip: gets gzip", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
      await conn.write(
        new TextEncoder().encode(
          `GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n`,
        ),
      );
      const raw = new Uint8Array(await new Response(conn.readable).arrayBuffer());
      const head = new TextDecoder().decode(raw.subarray(0, 400)).toLowerCase();
      assert.match(head, /content-encoding: gzip/);
      assert.match(head, /etag: w\/"v1"/);
      // Decode through fetch from a fresh request to check the bytes themselves.
      const res = await fetch(`${edge.url}/`, { headers: { "accept-encoding": "gzip" } });
      assert.equal(await res.text(), text);
    });
    await t.step(
      "client accepts nothing: the origin is asked for identity, bytes pass untouched",
      async () => {
        const { head, body } = await rawGet(edge.port);
        assert.doesNotMatch(head, /content-encoding/);
        assert.ok(body.includes("hello compressed world"));
        assert.equal(us.received.at(-1)!.headers.get("accept-encoding"), "identity");
      },
    );
    await t.step(
      "client accepts br only: origin's br is decoded by fetch and sent plain",
      async () => {
        const { head, body } = await rawGet(edge.port, "br");
        assert.match(head, /etag: w\/"v1"/);
        assert.doesNotMatch(head, /content-encoding/);
        assert.doesNotMatch(head, /content-length: 1/);
        assert.ok(body.includes("hello compressed world"));
      },
    );
    await t.step(
      "revalidation: an origin's weak ETag stays one weak ETag (Express with compression()), not W/W/",
      async () => {
        const { head } = await rawGet(edge.port, "br", "X-Weak: 1\r\n");
        assert.match(head, /\r\netag: w\/"v1"\r\n/);
      },
    );
    await t.step(
      "origin ignores identity and compresses anyway: passed through with its header",
      async () => {
        const { head } = await rawGet(edge.port, "identity", "X-Stubborn: 1\r\n");
        assert.match(head, /content-encoding: gzip/);
      },
    );
  }, {
    handlers: {
      us: (req) => {
        const accepts = req.headers.get("accept-encoding") ?? "";
        const etag = req.headers.get("x-weak") ? 'W/"v1"' : '"v1"';
        const headers = { "content-type": "text/plain", etag };
        if (accepts === "identity" && req.headers.get("x-stubborn")) {
          return new Response(gz, { headers: { ...headers, "content-encoding": "gzip" } });
        }
        if (accepts.includes("gzip")) {
          return new Response(gz, { headers: { ...headers, "content-encoding": "gzip" } });
        }
        if (accepts.includes("br")) {
          return new Response(br, { headers: { ...headers, "content-encoding": "br" } });
        }
        return new Response(text, { headers });
      },
    },
  });
});

Deno.test("debug headers: off by default", () =>
  withStack(async ({ edge }) => {
    const res = await fetch(`${edge.url}/`);
    await res.body?.cancel();
    assert.equal(res.headers.get("x-vestibule-rule"), null);
    assert.equal(res.headers.get("x-vestibule-region"), null);
  }));

Deno.test("health endpoint answers without calling any upstream", () =>
  withStack(async ({ au, us, web, edge }) => {
    const res = await fetch(`${edge.url}/_vestibule/health`);
    assert.deepEqual(await res.json(), { status: "ok" });
    assert.equal(au.received.length + us.received.length + web.received.length, 0);
  }));

Deno.test("regional route: geo.ip_lookup assumes the region from the client IP behind a trusted proxy", async () => {
  const { createCountryLookup } = await import("../lib/geo_ip.ts");
  // 203.0.113.0/24 → AU, 198.51.100.0/24 → FR (numeric ranges, as the dataset stores them).
  const countryLookup = createCountryLookup({
    ipv4NumCsv: "3325256704,3325256959,FR\n3405803776,3405804031,AU",
    ipv6NumCsv: "",
  });
  const au = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    geo: { countries: { AU: "au" }, ip_lookup: true },
    trusted_proxy_hops: 1,
    rules: [{ name: "app", type: "regional" }],
  }, { deps: { countryLookup } });
  try {
    // An entry is read as nginx's realip reads it: `ip:port` (Azure Application Gateway) is the
    // address; one that is no address leaves the socket peer, for geo and X-Real-IP alike.
    const cases = [
      ["203.0.113.50", au, "203.0.113.50"],
      ["198.51.100.7", us, "198.51.100.7"],
      ["not-an-ip", us, "127.0.0.1"],
      ["203.0.113.50:4711", au, "203.0.113.50"],
    ] as const;
    for (const [xff, region, realIp] of cases) {
      const before = region.received.length;
      const res = await fetch(`${edge.url}/`, { headers: { "x-forwarded-for": xff } });
      await res.body?.cancel();
      assert.equal(region.received.length, before + 1, `${xff} went to the wrong region`);
      assert.equal(region.received.at(-1)!.headers.get("x-real-ip"), realIp, xff);
      assert.equal(res.headers.get("set-cookie"), null);
    }
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("regional route: staff region switching takes the region from the path and pins on success", () =>
  withStack(async ({ au, us, edge }) => {
    let res = await fetch(`${edge.url}/staff/switch-region/au`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie: "__Host-vestibule-region=us; sessionid=us-session; csrftoken=c" },
    });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.equal(au.received.length, 1);
    assert.equal(us.received.length, 0);
    assert.equal(
      au.received[0].headers.get("cookie"),
      "csrftoken=c",
      "the US session cookie stays out of AU",
    );
    assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au; /);
    // An unknown region in the path falls back to the pin, and a failed answer does not pin.
    res = await fetch(`${edge.url}/staff/switch-region/mars`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie: "__Host-vestibule-region=us" },
    });
    await res.body?.cancel();
    assert.equal(us.received.length, 1);
    assert.deepEqual(res.headers.getSetCookie(), []);
    // Pinning an assumed region: an unknown region falls back to the assumed one, and even a
    // successful answer from there must not pin it.
    res = await fetch(`${edge.url}/staff/switch-region/mars`, {
      method: "POST",
      redirect: "manual",
      headers: { "cf-ipcountry": "AU" },
    });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.equal(au.received.length, 2);
    assert.deepEqual(res.headers.getSetCookie(), []);
  }, {
    rules: [
      {
        name: "staff-switch-region",
        type: "regional",
        match: { methods: ["POST"], path: "^/staff/switch-region/(?<region>[a-z]+)$" },
        region_from: { path_group: "region" },
        pin_on: { status: "3xx" },
      },
      { name: "app", type: "regional" },
    ],
    handlers: {
      au: () => new Response(null, { status: 302, headers: { location: "/" } }),
      us: () => new Response("no such region", { status: 404 }),
    },
  }));

Deno.test("rule bypass: a percent-encoded path (/%61bout) matches the rule for the path it stands for", async () => {
  const us = startUpstream();
  const web = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    upstreams: { website: { origin: web.url } },
    default_region: "us",
    rules: [
      {
        name: "website",
        type: "global",
        match: { path: "^/(about|pricing)(/.*)?$" },
        upstream: "website",
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    for (const path of ["/about", "/%61bout", "/pric%69ng/x"]) {
      await (await fetch(edge.url + path)).body?.cancel();
    }
    // The upstream gets the path as the client sent it (an escaped "/": path_confusion_test.ts).
    assert.deepEqual(web.received.map((r) => r.path), ["/about", "/%61bout", "/pric%69ng/x"]);
    assert.deepEqual(us.received.map((r) => r.path), []);
  } finally {
    await Promise.all([edge.close(), us.close(), web.close()]);
  }
});

Deno.test("slowloris: a body that a rule reads and that trickles past body_timeout_ms gets 408", async (t) => {
  const us = startUpstream();
  const au = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url }, au: { origin: au.url } },
    default_region: "us",
    body_timeout_ms: 300,
    rules: [
      {
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/login$" },
        success: { status: [302] },
      },
      { name: "graphql", type: "regional", match: { path: "^/gql$", body: { regex: "x" } } },
      { name: "app", type: "regional" },
    ],
  });
  try {
    for (const path of ["/login", "/gql"]) {
      await t.step(path, async () => {
        const { answer, ms } = await firstAnswer(
          edge.port,
          `POST ${path} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nConnection: close\r\n\r\nabc`,
        );
        assert.match(answer, /^HTTP\/1\.1 408 /, answer.slice(0, 40));
        assert.match(answer, /body_timeout/);
        assert.ok(ms >= 250 && ms < 2500, `answered after ${Math.round(ms)} ms`);
      });
    }
    assert.equal(us.received.length + au.received.length, 0);
  } finally {
    await Promise.all([edge.close(), us.close(), au.close()]);
  }
});

/** Upstreams that answer a region switch (a POST to /switch) with a redirect. */
const switched = () => new Response(null, { status: 302, headers: { location: "/" } });

function switchRules(au: string, us: string, extra: Record<string, unknown> = {}) {
  return {
    regions: { au: { origin: au }, us: { origin: us } },
    default_region: "us",
    rules: [{
      name: "switch",
      type: "regional",
      match: { path: "^/switch$" },
      region_from: { query: "region" },
      pin_on: { status: "3xx" },
    }],
    ...extra,
  };
}

Deno.test("regional route: region_from a query parameter picks the region and pins on success", async (t) => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  const post = async (query: string) => {
    const res = await fetch(`${edge.url}/switch?${query}`, { method: "POST", redirect: "manual" });
    await res.body?.cancel();
    return res;
  };
  try {
    await t.step("the named region answers and is pinned", async () => {
      const res = await post("region=au");
      assert.equal(res.status, 302);
      assert.equal(au.received.at(-1)!.query, "?region=au");
      assert.equal(us.received.length, 0);
      assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au; /);
    });
    await t.step(
      "parameter smuggling: two regions in a repeated parameter name neither",
      async () => {
        const before = au.received.length;
        const res = await post("region=us&region=au");
        assert.equal(
          au.received.length,
          before,
          "the app may read the last value; the edge took neither",
        );
        assert.equal(us.received.length, 1, "the default region answers");
        assert.deepEqual(res.headers.getSetCookie(), [], "an assumed region is never pinned");
      },
    );
    await t.step("copies that agree still name the region", async () => {
      const res = await post("region=au&region=au");
      assert.equal(au.received.at(-1)!.query, "?region=au&region=au");
      assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au; /);
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("timeouts: a rule's timeout_ms overrides its origin's, so one slow route (uploads) can wait longer", async () => {
  const slow = startUpstream(async () => {
    await new Promise((resolve) => setTimeout(resolve, 400));
    return new Response("done");
  });
  const edge = startVestibule({
    regions: { us: { origin: slow.url, timeout_ms: 200 } },
    upstreams: { files: { origin: slow.url, timeout_ms: 200 } },
    default_region: "us",
    rules: [
      { name: "upload", type: "regional", match: { path: "^/upload$" }, timeout_ms: 5000 },
      {
        name: "files",
        type: "global",
        match: { path: "^/files$" },
        upstream: "files",
        timeout_ms: 5000,
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    for (const path of ["/upload", "/files"]) {
      const res = await fetch(`${edge.url}${path}`, { method: "POST", body: "x" });
      assert.equal(res.status, 200, path);
      assert.equal(await res.text(), "done");
    }
    const res = await fetch(`${edge.url}/other`, { headers: { accept: "application/json" } });
    assert.equal(res.status, 504);
    assert.equal((await res.json()).error, "upstream_timeout");
  } finally {
    await Promise.all([edge.close(), slow.close()]);
  }
});

Deno.test("region_from: a second copy of the parameter that the app reads under its name names no region", async (t) => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  // Each second parameter is `region` to the app: PHP strips leading spaces from a name (and
  // reads `+` as one), ends it at a NUL, and keeps the last copy; Rack 2 drops leading brackets.
  const smuggled: Array<[string, string]> = [
    ["PHP, leading space", "region=au&%20region=us"],
    ["PHP, leading +", "region=au&+region=us"],
    ["PHP, NUL after the name", "region=au&region%00=us"],
    ["Rack 2, brackets", "region=au&[region]=us"],
  ];
  try {
    for (const [app, query] of smuggled) {
      await t.step(`${app}: ?${query}`, async () => {
        const before = au.received.length;
        const res = await fetch(`${edge.url}/switch?${query}`, {
          method: "POST",
          redirect: "manual",
        });
        await res.body?.cancel();
        assert.equal(au.received.length, before, "the app reads us; the edge sent it to au");
        assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
      });
    }
    await t.step("still named: ?region=au with a form body of other fields", async () => {
      const before = au.received.length;
      const res = await fetch(`${edge.url}/switch?region=au`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "csrf=1&next=%2F",
      });
      await res.body?.cancel();
      assert.equal(au.received.length, before + 1);
      assert.equal(new TextDecoder().decode(au.received.at(-1)!.body), "csrf=1&next=%2F");
      assert.match(res.headers.getSetCookie()[0] ?? "", /^__Host-vestibule-region=au;/);
    });
    // Rack's Request#params (Sinatra), PHP's $_REQUEST (request_order "GP") and Laravel's
    // $request->input() read a form body's value over the query's.
    await t.step("$_REQUEST, Rack params: ?region=au with a form body region=us", async () => {
      const before = au.received.length;
      const res = await fetch(`${edge.url}/switch?region=au`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "region=us",
      });
      await res.body?.cancel();
      assert.equal(au.received.length, before, "the app reads us; the edge sent it to au");
      assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("region_from: body copies the app reads under the name", async (t) => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  try {
    // Rack 2's normalize_params drops leading brackets in a POST body as in the query:
    // Rack::Request#params (GET.merge(POST)) and Rails' params read `[region]=us` as region=us.
    await t.step("Rack 2: ?region=au with a form body [region]=us", async () => {
      const before = au.received.length;
      const res = await fetch(`${edge.url}/switch?region=au`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "%5Bregion%5D=us",
      });
      await res.body?.cancel();
      assert.equal(au.received.length, before, "the app reads us; the edge sent it to au");
      assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
    });
    // Rack's form_data? is true for a POST without Content-Type (`meth == POST && type.nil?`):
    // Rack::Request#params and Rails' params read this body as a form. A cross-site
    // `fetch(url, {method: "POST", mode: "no-cors", credentials: "include", body: bytes})`
    // sends exactly this.
    await t.step("Rack: ?region=au, POST without Content-Type, body region=us", async () => {
      const before = au.received.length;
      const res = await fetch(`${edge.url}/switch?region=au`, {
        method: "POST",
        redirect: "manual",
        body: new TextEncoder().encode("region=us"),
      });
      await res.body?.cancel();
      assert.equal(au.received.length, before, "the app reads us; the edge sent it to au");
      assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
    });
    // Laravel's input() (JSON input source over the query) and Rails' params
    // (request_parameters over query_parameters) read a JSON body's region.
    await t.step('Laravel/Rails: ?region=au with a JSON body {"region":"us"}', async () => {
      const before = au.received.length;
      const res = await fetch(`${edge.url}/switch?region=au`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ region: "us" }),
      });
      await res.body?.cancel();
      assert.equal(au.received.length, before, "the app reads us; the edge sent it to au");
      assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("region_from: an upload over body_limit_bytes is not refused: unread, it names no region and streams on", async () => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url, { body_limit_bytes: 1024 }));
  try {
    const form = new FormData();
    form.append("csrf", "1");
    form.append("avatar", new Blob([new Uint8Array(4096).fill(65)]), "a.bin");
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      redirect: "manual",
      body: form,
    });
    await res.body?.cancel();
    // Its region=… could be anywhere in it: unread, it names no region, so it goes where an
    // unnamed request goes (the default here), whole and unpinned, instead of a 413.
    assert.equal(res.status, 302);
    assert.deepEqual([au.received.length, us.received.length], [0, 1]);
    assert.ok(us.received[0].body.length > 4096);
    assert.deepEqual(res.headers.getSetCookie(), []);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("region_from: chunked multipart after chooseRegion reaches au byte for byte", async () => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  try {
    const form = new FormData();
    form.append("region", "au");
    form.append("file", new Blob([crypto.getRandomValues(new Uint8Array(50_000))]), "f.bin");
    const encoded = new Response(form);
    const type = encoded.headers.get("content-type")!;
    const sent = new Uint8Array(await encoded.arrayBuffer());
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": type },
      body: ReadableStream.from([sent.slice(0, 1000), sent.slice(1000)]),
    });
    await res.body?.cancel();
    assert.equal(au.received.length, 1);
    assert.deepEqual(au.received[0].body, sent);
    assert.match(res.headers.getSetCookie()[0] ?? "", /^__Host-vestibule-region=au;/);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("region_from: explain agrees with the router on a form body", async () => {
  const config = parseRules(
    JSON.stringify(switchRules("http://127.0.0.1:1", "http://127.0.0.1:2")),
    {
      env: () => undefined,
    },
  );
  const contradicting = await explainRequest({
    method: "POST",
    url: "https://app.example.com/switch?region=au",
    headers: [["Content-Type", "application/x-www-form-urlencoded"]],
    body: "region=us",
  }, config);
  assert.notEqual(contradicting.region === "au" && contradicting.reason === "region_from", true);
  const agreeing = await explainRequest({
    method: "POST",
    url: "https://app.example.com/switch?region=au",
    headers: [["Content-Type", "application/x-www-form-urlencoded"]],
    body: "region=au",
  }, config);
  assert.equal(agreeing.region, "au");
  assert.equal(agreeing.reason, "region_from");
});

Deno.test("region_from: a body the app reads by a Content-Type bodyCopies skips still contradicts the query", async (t) => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  const contradicted = async (headers: Record<string, string>, body: string) => {
    const before = au.received.length;
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      redirect: "manual",
      headers,
      body: new TextEncoder().encode(body),
    });
    await res.body?.cancel();
    assert.equal(au.received.length, before, "the app reads us; the edge sent it to au");
    assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
  };
  try {
    // Laravel's isJson() is Str::contains(CONTENT_TYPE, ['/json', '+json']) and input() then
    // reads the JSON body over the query. `text/plain;a=/json` is CORS-safelisted: a cross-site
    // no-cors fetch with credentials sends it.
    await t.step("Laravel: text/plain;a=/json with a JSON body", async () => {
      await contradicted({ "content-type": "text/plain;a=/json" }, '{"region":"us"}');
    });
    // Rails registers text/x-json and application/jsonrequest as synonyms of Mime[:json].
    await t.step("Rails: text/x-json", async () => {
      await contradicted({ "content-type": "text/x-json" }, '{"region":"us"}');
    });
    // Rack::Request parses PARSEABLE_DATA_MEDIA_TYPES (multipart/related, multipart/mixed) too.
    await t.step("Rack: multipart/mixed", async () => {
      await contradicted(
        { "content-type": "multipart/mixed; boundary=XX" },
        '--XX\r\nContent-Disposition: form-data; name="region"\r\n\r\nus\r\n--XX--\r\n',
      );
    });
    // Rack's MediaType splits at /\s*[;,]\s*/; PHP's SAPI cuts the type at ';', ',' or ' '.
    await t.step("Rack/PHP: a type cut at a comma", async () => {
      await contradicted(
        { "content-type": "application/x-www-form-urlencoded, text/plain" },
        "region=us",
      );
    });
    // Rack's content_type is nil for an empty header: form_data? then holds for a POST.
    await t.step("Rack: an empty Content-Type on a POST", async () => {
      await contradicted({ "content-type": "" }, "region=us");
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("region_from: a request without a body names its region whatever its Content-Type", async (t) => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  try {
    // SPA HTTP clients (axios defaults, fetch wrappers) send Content-Type: application/json on
    // every request; the GET carries no body, and Rails/Laravel read ?region=au.
    await t.step("GET ?region=au with Content-Type: application/json and no body", async () => {
      const res = await fetch(`${edge.url}/switch?region=au`, {
        redirect: "manual",
        headers: { "content-type": "application/json" },
      });
      await res.body?.cancel();
      assert.equal(au.received.length, 1, "the switch went to the default region instead");
      assert.match(res.headers.getSetCookie()[0] ?? "", /^__Host-vestibule-region=au;/);
    });
    // Rails: parse_formatted_parameters returns {} for a zero Content-Length; Laravel's
    // json_decode('') gives an empty input bag: both read the query's au.
    await t.step(
      "POST ?region=au with Content-Type: application/json and an empty body",
      async () => {
        const res = await fetch(`${edge.url}/switch?region=au`, {
          method: "POST",
          redirect: "manual",
          headers: { "content-type": "application/json" },
          body: "",
        });
        await res.body?.cancel();
        assert.equal(au.received.length, 2, "the switch went to the default region instead");
        assert.match(res.headers.getSetCookie()[0] ?? "", /^__Host-vestibule-region=au;/);
      },
    );
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("region_from: explain agrees with the router on a --body over body_limit_bytes", async () => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const rules = { ...switchRules(au.url, us.url), body_limit_bytes: 1024 };
  const edge = startVestibule(rules);
  try {
    const body = `region=au&note=${"x".repeat(4096)}`;
    const headers = { "content-type": "application/x-www-form-urlencoded" };
    // curl --data, a browser form, fetch: every client sends the length of such a body.
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      redirect: "manual",
      headers,
      body,
    });
    await res.body?.cancel();
    assert.equal(res.status, 302, "the router streams it on to the default region");
    assert.deepEqual([au.received.length, us.received.length], [0, 1]);

    const config = parseRules(JSON.stringify(rules), { env: () => undefined });
    const explained = await explainRequest({
      method: "POST",
      url: "https://app.example.com/switch?region=au",
      headers: Object.entries(headers),
      body,
    }, config);
    assert.equal(explained.refused, undefined, "explain says 413 body_too_large");
    assert.equal(explained.region, "us");
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("region_from: a region named in capitals (?region=AU) is that region, as a pin in capitals is", async () => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  try {
    const res = await fetch(`${edge.url}/switch?region=AU`, { method: "POST", redirect: "manual" });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.equal(au.received.length, 1, "the named region answers");
    assert.equal(us.received.length, 0);
    assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au; /);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("forced pin: a form body in a charset other than UTF-8 names no region, as the edge cannot read it as the app does", async () => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  try {
    // The app decodes UTF-16 and reads region=us; the edge, reading bytes, finds no `region`.
    const body = new Uint8Array([..."region=us"].flatMap((c) => [c.charCodeAt(0), 0]));
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-16le" },
      body,
    });
    await res.body?.cancel();
    assert.equal(au.received.length, 0, "the query's region was taken over the body's");
    assert.deepEqual(res.headers.getSetCookie(), [], "no pin for a region the app did not read");
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("forced pin: a gzip-encoded form body names no region, as the edge does not read what Express inflates", async () => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  try {
    // Express inflates the body and reads region=us; the gzip bytes hold no `region` to compare.
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      redirect: "manual",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "content-encoding": "gzip",
      },
      body: new Uint8Array(gzipSync(new TextEncoder().encode("region=us"))),
    });
    await res.body?.cancel();
    assert.equal(au.received.length, 0, "the query's region was taken over the body's");
    assert.deepEqual(res.headers.getSetCookie(), [], "no pin for a region the app did not read");
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("pin_on set_cookie: a cookie without Path lives at the request's own directory, not at /", async () => {
  // The login answer sets sid for /account (its default path) and clears a stale sid at /: the
  // browser keeps the new one, so the switch succeeded and the browser is pinned.
  const login = () => {
    const headers = new Headers({ location: "/" });
    headers.append("set-cookie", "sid=new");
    headers.append("set-cookie", "sid=; Max-Age=0; Path=/");
    return new Response(null, { status: 302, headers });
  };
  const au = startUpstream(login);
  const us = startUpstream(login);
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{
      name: "switch",
      type: "regional",
      match: { path: "^/account/switch$" },
      region_from: { query: "region" },
      pin_on: { status: [302], set_cookie: "sid" },
    }],
  });
  try {
    const res = await fetch(`${edge.url}/account/switch?region=au`, {
      method: "POST",
      redirect: "manual",
    });
    await res.body?.cancel();
    assert.equal(au.received.length, 1);
    assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au; /);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("region_from reads a form body of exactly body_limit_bytes (the limit is inclusive)", async () => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url, { body_limit_bytes: 1024 }));
  try {
    const body = "region=au&pad=" + "x".repeat(1024 - "region=au&pad=".length);
    assert.equal(body.length, 1024);
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body,
    });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.deepEqual([au.received.length, us.received.length], [1, 0]);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
