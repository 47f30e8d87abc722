/** End-to-end: the access-log line, metrics, request ids and Server-Timing, on real loopback servers. */
import assert from "node:assert/strict";
import type { AppDeps } from "../app.ts";
import {
  DEAD_ORIGIN,
  oneRegion,
  rawRequest,
  rawUpstream,
  startUpstream,
  startVestibule,
  type TestServer,
} from "./_servers.ts";

const PIN = "__Host-vestibule-region";
const TOKEN = "scrape-token-0123456789";

interface Stack {
  au: TestServer;
  us: TestServer;
  web: TestServer;
  edge: TestServer;
  /** Every access-log line written so far, parsed. */
  lines: Record<string, unknown>[];
  /** The raw text written to the log, to search for leaks. */
  raw: string[];
}

async function withStack(
  fn: (s: Stack) => Promise<void>,
  options: { extra?: Record<string, unknown>; deps?: Partial<AppDeps> } = {},
) {
  const au = startUpstream((req) =>
    new URL(req.url).pathname === "/login"
      ? new Response(null, {
        status: 302,
        headers: { location: "/home", "set-cookie": "sessionid=new-session-au; Path=/" },
      })
      : new Response("au says hi", { headers: { "content-type": "text/plain" } })
  );
  const us = startUpstream((req) =>
    new URL(req.url).pathname === "/login"
      ? new Response("wrong password", { status: 200 })
      : Response.json({ region: "us" })
  );
  const web = startUpstream();
  const raw: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const log = (line: string) => {
    raw.push(line);
    lines.push(JSON.parse(line));
  };
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    upstreams: { website: { origin: web.url } },
    default_region: "us",
    forward_cookies: ["csrftoken"],
    rules: [
      { name: "website", type: "global", match: { path: "^/pricing$" }, upstream: "website" },
      {
        name: "old-help",
        type: "global",
        match: { path: "^/help$" },
        redirect: { location: "https://help.example.com/" },
      },
      {
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/login$" },
        success: { status: [302], set_cookie: "sessionid" },
      },
      { name: "app", type: "regional", match: { path: "^/app" } },
    ],
    ...options.extra,
  }, { deps: { log, metricsToken: TOKEN, ...options.deps } });
  try {
    await fn({
      au,
      us,
      web,
      edge,
      raw,
      lines,
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close(), web.close()]);
  }
}

async function drain(res: Response): Promise<Response> {
  await res.body?.cancel();
  return res;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test("access log: one line per request with the route's decision", async (t) => {
  await withStack(async ({ au, edge, lines }) => {
    await t.step("regional, pinned by cookie", async () => {
      const res = await fetch(`${edge.url}/app/dashboard?tab=2`, {
        headers: { cookie: `${PIN}=au` },
      });
      assert.equal(await res.text(), "au says hi");
      assert.equal(lines.length, 1);
      const line = lines[0];
      assert.deepEqual(Object.keys(line), [
        "time",
        "msg",
        "request_id",
        "method",
        "host",
        "path",
        "rule",
        "type",
        "region",
        "region_reason",
        "status",
        "upstream_ms",
        "total_ms",
        "bytes",
      ]);
      assert.equal(line.msg, "request");
      assert.match(line.request_id as string, UUID);
      assert.equal(line.request_id, au.received[0].headers.get("x-request-id"));
      assert.equal(res.headers.get("x-request-id"), null, "returned only with debug_headers");
      assert.equal(line.method, "GET");
      assert.equal(line.host, new URL(edge.url).host);
      assert.equal(line.path, "/app/dashboard", "no query string");
      assert.equal(line.rule, "app");
      assert.equal(line.type, "regional");
      assert.equal(line.region, "au");
      assert.equal(line.region_reason, "pin cookie");
      assert.equal(line.status, 200);
      assert.equal(line.bytes, "au says hi".length);
      assert.ok(typeof line.upstream_ms === "number" && line.upstream_ms >= 0);
      assert.ok(typeof line.total_ms === "number" && line.total_ms >= 0);
      const time = Date.parse(line.time as string);
      assert.ok(Math.abs(Date.now() - time) < 10_000, `time ${line.time}`);
    });
    await t.step("regional, default region", async () => {
      await drain(await fetch(`${edge.url}/app`));
      assert.equal(lines[1].region, "us");
      assert.equal(lines[1].region_reason, "default");
    });
    await t.step("global proxy names its upstream, no region", async () => {
      await drain(await fetch(`${edge.url}/pricing`));
      assert.equal(lines[2].rule, "website");
      assert.equal(lines[2].type, "global");
      assert.equal(lines[2].upstream, "website");
      assert.equal(lines[2].region, undefined);
    });
    await t.step("global redirect: outcome redirect, no upstream time", async () => {
      await drain(await fetch(`${edge.url}/help`, { redirect: "manual" }));
      assert.equal(lines[3].status, 302);
      assert.equal(lines[3].outcome, "redirect");
      assert.equal(lines[3].upstream_ms, undefined);
    });
    await t.step("no rule: the error code, no rule", async () => {
      await drain(await fetch(`${edge.url}/nowhere`));
      assert.equal(lines[4].status, 404);
      assert.equal(lines[4].error, "no_rule");
      assert.equal(lines[4].rule, undefined);
    });
  });
});

Deno.test("access log: a regional pin says outcome pinned; a body over the limit says body_too_large", async (t) => {
  await withStack(async ({ au, edge, lines }) => {
    await t.step("pin_on matched: the browser pinned, the line says so", async () => {
      const res = await fetch(`${edge.url}/switch/au`, { method: "POST" });
      assert.equal(await res.text(), "au says hi");
      assert.match(res.headers.getSetCookie().join("\n"), new RegExp(`^${PIN}=au`));
      assert.equal(lines.at(-1)!.outcome, "pinned");
      assert.equal(lines.at(-1)!.region_reason, "region_from");
    });
    await t.step("413: the error code, and nothing forwarded", async () => {
      const res = await fetch(`${edge.url}/notes`, { method: "POST", body: "x".repeat(17) });
      assert.equal((await res.json()).error, "body_too_large");
      assert.deepEqual([lines.at(-1)!.status, lines.at(-1)!.error], [413, "body_too_large"]);
      assert.equal(au.received.length, 1);
    });
  }, {
    extra: {
      body_limit_bytes: 16,
      rules: [
        {
          name: "switch",
          type: "regional",
          match: { methods: ["POST"], path: "^/switch/(?<region>[a-z]+)$" },
          region_from: { path_group: "region" },
          pin_on: { status: "2xx" },
        },
        { name: "notes", type: "regional", match: { body: { regex: "note" } } },
      ],
    },
  });
});

Deno.test("access log: a broadcast line has each region's status and latency and the outcome", async () => {
  await withStack(async ({ edge, lines }) => {
    const res = await fetch(`${edge.url}/login`, {
      method: "POST",
      body: "username=ann",
      redirect: "manual",
    });
    await drain(res);
    assert.equal(res.status, 302);
    assert.equal(lines.length, 1, "one line per request, no separate broadcast line");
    const line = lines[0];
    assert.equal(line.rule, "login");
    assert.equal(line.type, "broadcast");
    assert.equal(line.outcome, "success");
    assert.equal(line.region, "au");
    assert.equal(line.region_reason, "broadcast");
    const regions = line.regions as { region: string; status: number; ms: number }[];
    assert.deepEqual(regions.map((r) => [r.region, r.status]), [["au", 302], ["us", 200]]);
    for (const r of regions) assert.ok(typeof r.ms === "number" && r.ms >= 0);
  });
});

Deno.test("access log: an upstream that cannot be reached is logged with its error code", async () => {
  await withStack(async ({ edge, lines }) => {
    const res = await drain(
      await fetch(`${edge.url}/app`, { headers: { "x-vestibule-region": "dead" } }),
    );
    assert.equal(res.status, 502);
    assert.equal(lines[0].status, 502);
    assert.equal(lines[0].region, "dead");
    assert.equal(lines[0].error, "upstream_unavailable");
  }, {
    extra: {
      regions: { dead: { origin: DEAD_ORIGIN } },
      default_region: "dead",
      upstreams: {},
      rules: [{ name: "app", type: "regional" }],
    },
  });
});

Deno.test("access log: an unexpected error is logged as a 500 internal_error with its request id", async () => {
  await withStack(async ({ edge, lines }) => {
    const res = await drain(await fetch(`${edge.url}/app`));
    assert.equal(res.status, 500);
    assert.equal(lines.length, 1);
    assert.equal(lines[0].status, 500);
    assert.equal(lines[0].error, "internal_error");
    assert.match(lines[0].request_id as string, UUID);
  }, {
    extra: { geo: { ip_lookup: true, countries: { AU: "au" } } },
    deps: {
      countryLookup: () => {
        throw new Error("GeoIP database is missing");
      },
    },
  });
});

Deno.test("log leak: cookies, Authorization, query tokens and body secrets never reach the log", async () => {
  const secrets = {
    session: "s3ss10n-v4lue-7f3a",
    csrf: "csrf-v4lue-91b2",
    bearer: "b34rer-t0ken-c0ffee",
    password: "hunter2-Pa55w0rd!",
    query: "qu3ry-t0ken-d00d",
    requestId: "x\r\nforged",
  };
  await withStack(async ({ edge, raw, lines }) => {
    for (const path of ["/app/account", "/login", "/pricing"]) {
      const res = await fetch(`${edge.url}${path}?token=${secrets.query}`, {
        method: "POST",
        headers: {
          cookie: `sessionid=${secrets.session}; csrftoken=${secrets.csrf}; ${PIN}=au`,
          authorization: `Bearer ${secrets.bearer}`,
          "content-type": "application/x-www-form-urlencoded",
          "x-request-id": encodeURIComponent(secrets.requestId),
        },
        body: `username=ann&password=${encodeURIComponent(secrets.password)}`,
        redirect: "manual",
      });
      await drain(res);
    }
    assert.equal(raw.length, 3);
    const text = raw.join("\n");
    for (const [name, value] of Object.entries(secrets)) {
      assert.ok(!text.includes(value), `${name} leaked into ${text}`);
      assert.ok(!text.includes(encodeURIComponent(value)), `${name} (encoded) leaked`);
    }
    for (
      const word of ["sessionid", "csrftoken", "authorization", "password", "token="]
    ) {
      assert.ok(!text.toLowerCase().includes(word), `"${word}" appears in ${text}`);
    }
    assert.deepEqual(lines.map((l) => l.path), ["/app/account", "/login", "/pricing"]);
  });
});

Deno.test("request id: a safe incoming X-Request-Id goes upstream and into the log", async (t) => {
  await withStack(async ({ au, us, edge, lines }) => {
    await t.step("safe id kept both ways", async () => {
      const res = await drain(
        await fetch(`${edge.url}/app`, { headers: { "x-request-id": "req-abc.123" } }),
      );
      assert.equal(us.received[0].headers.get("x-request-id"), "req-abc.123");
      assert.equal(res.headers.get("x-request-id"), null);
      assert.equal(lines[0].request_id, "req-abc.123");
    });
    await t.step("unsafe id replaced by the same new UUID everywhere", async () => {
      await drain(
        await fetch(`${edge.url}/app`, { headers: { "x-request-id": "a".repeat(200) } }),
      );
      const id = lines[1].request_id as string;
      assert.match(id, UUID);
      assert.equal(us.received[1].headers.get("x-request-id"), id);
      assert.equal(lines[1].request_id, id);
    });
    await t.step("every broadcast region gets the same id", async () => {
      await drain(
        await fetch(`${edge.url}/login`, { method: "POST", redirect: "manual" }),
      );
      const id = lines.at(-1)!.request_id as string;
      assert.match(id, UUID);
      assert.equal(au.received.at(-1)!.headers.get("x-request-id"), id);
      assert.equal(us.received.at(-1)!.headers.get("x-request-id"), id);
    });
    await t.step(
      "without OpenTelemetry an incoming traceparent passes through unchanged",
      async () => {
        const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        await drain(
          await fetch(`${edge.url}/app`, {
            headers: { traceparent, tracestate: "congo=t61rcWkgMzE" },
          }),
        );
        assert.equal(us.received.at(-1)!.headers.get("traceparent"), traceparent);
        assert.equal(us.received.at(-1)!.headers.get("tracestate"), "congo=t61rcWkgMzE");
      },
    );
  });
});

Deno.test("metrics: a scrape after known traffic shows exact counts", async () => {
  await withStack(async ({ edge }) => {
    const send = async (path: string, init: RequestInit = {}) =>
      await drain(await fetch(`${edge.url}${path}`, { redirect: "manual", ...init }));
    await send("/app", { headers: { cookie: `${PIN}=au` } });
    await send("/app", { headers: { cookie: `${PIN}=au` } });
    await send("/app");
    await send("/pricing");
    await send("/help");
    await send("/nowhere");
    await send("/login", { method: "POST" });
    await send("/login", { method: "POST" });

    const res = await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const expected = [
      'vestibule_requests_total{rule="app",type="regional",region="au",status_class="2xx"} 2',
      'vestibule_requests_total{rule="app",type="regional",region="us",status_class="2xx"} 1',
      'vestibule_requests_total{rule="website",type="global",region="",status_class="2xx"} 1',
      'vestibule_requests_total{rule="old-help",type="global",region="",status_class="3xx"} 1',
      'vestibule_requests_total{rule="",type="",region="",status_class="4xx"} 1',
      'vestibule_requests_total{rule="login",type="broadcast",region="au",status_class="3xx"} 2',
      'vestibule_broadcast_outcomes_total{rule="login",outcome="success"} 2',
      // 2 pinned + 2 broadcast answers from au; 1 regional + 2 broadcast from us.
      'vestibule_upstream_duration_seconds_count{upstream="au"} 4',
      'vestibule_upstream_duration_seconds_count{upstream="us"} 3',
      'vestibule_upstream_duration_seconds_count{upstream="website"} 1',
    ];
    const lines = text.split("\n");
    for (const line of expected) assert.ok(lines.includes(line), `missing ${line} in\n${text}`);
    assert.ok(!text.includes("_metrics"), "scrapes are not counted as routed requests");
  });
});

Deno.test("metrics endpoint: 404 without a configured token, 401 on a wrong one, 200 on the right one", async (t) => {
  await t.step(
    "no token configured: 404 and nothing scraped, logged as a scan of the prefix is",
    () =>
      withStack(async ({ edge, lines }) => {
        const res = await fetch(`${edge.url}/_vestibule/metrics`, {
          headers: { authorization: "Bearer anything", accept: "application/json" },
        });
        assert.equal(res.status, 404);
        assert.equal((await res.json()).error, "not_found");
        assert.deepEqual(lines.map((l) => [l.status, l.error]), [[404, "not_found"]]);
      }, { deps: { metricsToken: undefined } }),
  );
  await t.step("token configured", () =>
    withStack(async ({ edge, us, lines, raw }) => {
      const tries: [Record<string, string>, number][] = [
        [{}, 401],
        [{ authorization: `Bearer ${TOKEN}x` }, 401],
        [{ authorization: `Bearer ${TOKEN.slice(0, -1)}` }, 401],
        [{ authorization: `Basic ${btoa(`x:${TOKEN}`)}` }, 401],
        [{ authorization: TOKEN }, 401],
        [{ authorization: `bearer ${TOKEN}` }, 200],
      ];
      for (const [headers, status] of tries) {
        const res = await fetch(`${edge.url}/_vestibule/metrics`, { headers });
        assert.equal(res.status, status, JSON.stringify(headers));
        if (status === 401) {
          assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="vestibule metrics"');
        }
        const body = await res.text();
        assert.equal(body.includes("vestibule_requests_total"), status === 200);
      }
      // Refused ones logged (a token being guessed shows), without what was presented; the
      // scrape not.
      assert.deepEqual(
        lines.map((l) => [l.status, l.error]),
        tries.slice(0, -1).map(() => [
          401,
          "unauthorized",
        ]),
      );
      assert.ok(!raw.join("\n").includes(TOKEN.slice(0, -1)), "a presented token in the log");
      // HEAD states the length GET's body has (the scrape between changes no count).
      const headers = { authorization: `Bearer ${TOKEN}` };
      const get = await fetch(`${edge.url}/_vestibule/metrics`, { headers });
      const length = (await get.arrayBuffer()).byteLength;
      const head = await fetch(`${edge.url}/_vestibule/metrics`, { method: "HEAD", headers });
      assert.deepEqual(
        [get.headers.get("content-length"), head.status, head.headers.get("content-length")],
        [String(length), 200, String(length)],
      );
      assert.equal(us.received.length, 0, "the endpoint never reaches an upstream");
    }));
});

Deno.test("Server-Timing: off by default, edge and upstream durations when server_timing is on", async (t) => {
  await t.step("off", () =>
    withStack(async ({ edge }) => {
      const res = await drain(await fetch(`${edge.url}/app`));
      assert.equal(res.headers.get("server-timing"), null);
    }));
  await t.step("on", () =>
    withStack(async ({ edge }) => {
      let res = await drain(await fetch(`${edge.url}/app`));
      assert.match(
        res.headers.get("server-timing")!,
        /^edge;dur=\d+\.\d, upstream;dur=\d+\.\d$/,
      );
      res = await drain(await fetch(`${edge.url}/help`, { redirect: "manual" }));
      assert.match(res.headers.get("server-timing")!, /^edge;dur=\d+\.\d$/);
    }, { extra: { server_timing: true } }));
  await t.step("on, after the upstream's own", async () => {
    const us = startUpstream(() =>
      new Response("ok", { headers: { "server-timing": "db;dur=5" } })
    );
    const edge = startVestibule(oneRegion(us.url, { server_timing: true }));
    try {
      const res = await drain(await fetch(`${edge.url}/x`));
      assert.match(
        res.headers.get("server-timing")!,
        /^db;dur=5, edge;dur=\d+\.\d, upstream;dur=\d+\.\d$/,
      );
    } finally {
      await Promise.all([edge.close(), us.close()]);
    }
  });
});

Deno.test("observe: false turns off the log line and the metrics, not the request id", async () => {
  await withStack(async ({ edge, us, raw }) => {
    const res = await drain(
      await fetch(`${edge.url}/app`, { headers: { "x-request-id": "kept-from-the-client" } }),
    );
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-request-id"), null);
    await drain(await fetch(`${edge.url}/app`, { headers: { "x-request-id": 'bad"id' } }));
    assert.equal(raw.length, 0);
    assert.equal(us.received[0].headers.get("x-request-id"), "kept-from-the-client");
    assert.match(us.received[1].headers.get("x-request-id")!, UUID, "an unsafe id is replaced");
    const scrape = await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.ok(!(await scrape.text()).includes("vestibule_requests_total{"));
  }, { deps: { observe: false } });
});

Deno.test("health: answered without a log line or an upstream call", async () => {
  await withStack(async ({ edge, au, us, web, raw }) => {
    const res = await fetch(`${edge.url}/_vestibule/health`);
    assert.deepEqual(await res.json(), { status: "ok" });
    assert.equal(au.received.length + us.received.length + web.received.length, 0);
    assert.equal(raw.length, 0);
  });
});

Deno.test("prefix scan: any other request under /_vestibule/ is a logged and counted 404", async (t) => {
  await withStack(async ({ edge, au, us, web, lines }) => {
    const requests = [
      ["GET", "/_vestibule/admin", "/_vestibule/admin"],
      ["GET", "/%5Fvestibule/config", "/_vestibule/config"],
      ["POST", "/_vestibule/health", "/_vestibule/health"],
      ["DELETE", "/_vestibule/metrics", "/_vestibule/metrics"],
    ];
    for (const [method, path, logged] of requests) {
      await t.step(`${method} ${path}`, async () => {
        const before = lines.length;
        const res = await fetch(`${edge.url}${path}`, { method });
        await res.body?.cancel();
        assert.equal(res.status, 404);
        assert.equal(lines.length, before + 1, "one access-log line");
        const line = lines.at(-1)!;
        assert.deepEqual([line.method, line.path, line.status, line.error], [
          method,
          logged,
          404,
          "not_found",
        ]);
      });
    }
    assert.equal(au.received.length + us.received.length + web.received.length, 0);
    const scrape = await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.match(
      await scrape.text(),
      /vestibule_requests_total\{rule="",type="",region="",status_class="4xx"\} 4/,
    );
  }, { deps: { metricsToken: TOKEN } });
});

Deno.test("access log: a HEAD answer counts no body bytes, whatever its Content-Length", async () => {
  await withStack(async ({ edge, lines }) => {
    const res = await fetch(`${edge.url}/dashboard`, {
      method: "HEAD",
      headers: { cookie: `${PIN}=au` },
    });
    assert.equal(await res.text(), "");
    assert.ok(Number(res.headers.get("content-length")) > 0, "the GET's length is announced");
    assert.deepEqual([lines[0].method, lines[0].bytes], ["HEAD", 0]);
  });
});

Deno.test("request id: with debug_headers it comes back to the client with the rule and region", () =>
  withStack(async ({ au, edge, lines }) => {
    const res = await drain(
      await fetch(`${edge.url}/app`, { headers: { "x-vestibule-region": "au" } }),
    );
    const id = res.headers.get("x-request-id")!;
    assert.match(id, UUID);
    assert.equal(id, au.received[0].headers.get("x-request-id"));
    assert.equal(id, lines[0].request_id);
    assert.equal(res.headers.get("x-vestibule-rule"), "app");
    assert.equal(res.headers.get("x-vestibule-region"), "au");
  }, { extra: { debug_headers: true } }));

Deno.test("metrics: OCAP hits, misses and coalesced waits are counted", async () => {
  const { ocapRules, OCAP_ENV, tokenRequest } = await import("./_ocap.ts");
  const release = Promise.withResolvers<void>();
  const provider = startUpstream(async () => {
    await release.promise;
    return Response.json({ access_token: "t" });
  });
  const kv = await Deno.openKv(":memory:");
  const lines: string[] = [];
  const edge = startVestibule(ocapRules(provider.url), {
    env: OCAP_ENV,
    deps: { kv, metricsToken: TOKEN, log: (line) => lines.push(line) },
  });
  try {
    const first = Promise.all([fetch(tokenRequest(edge.url)), fetch(tokenRequest(edge.url))]);
    // Let both callers reach OCAP before the provider answers.
    while (provider.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    release.resolve();
    for (const res of await first) await res.body?.cancel();
    const third = await fetch(tokenRequest(edge.url));
    await third.body?.cancel();
    const scrape = await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const text = await scrape.text();
    assert.match(text, /^vestibule_ocap_cache_total\{result="miss"\} 1$/m);
    assert.match(text, /^vestibule_ocap_cache_total\{result="coalesced"\} 1$/m);
    assert.match(text, /^vestibule_ocap_cache_total\{result="hit"\} 1$/m);
    assert.equal(provider.received.length, 1);
    assert.equal(lines.length, 3, "OCAP requests are in the access log too");
    assert.ok(lines.every((l) => !l.includes("one-time-code") && !l.includes(OCAP_ENV.OCAP_KEY)));
  } finally {
    await Promise.all([edge.close(), provider.close()]);
    kv.close();
  }
});

Deno.test("5xx inflation: a client that hangs up mid-upload is logged as client_closed, not an upstream failure", async (t) => {
  const up = startUpstream();
  const lines: string[] = [];
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [
      { name: "inspects-body", type: "regional", match: { path: "^/gql$", body: { regex: "x" } } },
      { name: "app", type: "regional" },
    ],
  }, { deps: { log: (line) => lines.push(line) } });
  try {
    for (const path of ["/upload", "/gql"]) {
      await t.step(path, async () => {
        lines.length = 0;
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
        await conn.write(new TextEncoder().encode(
          `POST ${path} HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nabc`,
        ));
        await new Promise((resolve) => setTimeout(resolve, 100));
        conn.close();
        for (let i = 0; i < 100 && lines.length === 0; i++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const line = JSON.parse(lines[0]);
        assert.equal(line.error, "client_closed");
        assert.equal(line.status, 499);
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("client gone: a client that hangs up before the answer cancels the upstream call within about a second (499)", async (t) => {
  let aborted = 0;
  const reached: Array<() => void> = [];
  const release = Promise.withResolvers<void>();
  const up = startUpstream(async (req) => {
    req.signal.addEventListener("abort", () => aborted++);
    reached.shift()?.();
    await release.promise; // a long poll
    return new Response("late");
  });
  const web = startUpstream(async (req) => {
    req.signal.addEventListener("abort", () => aborted++);
    reached.shift()?.();
    await release.promise;
    return new Response("late");
  });
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    upstreams: { web: { origin: web.url } },
    default_region: "us",
    rules: [
      { name: "reports", type: "global", match: { path: "^/reports$" }, upstream: "web" },
      { name: "app", type: "regional" },
    ],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)) } });
  try {
    for (const path of ["/poll", "/reports"]) {
      await t.step(path, async () => {
        const before = aborted;
        const arrived = new Promise<void>((resolve) => reached.push(resolve));
        const client = new AbortController();
        const pending = fetch(`${edge.url}${path}`, { signal: client.signal }).catch((e) => e);
        await arrived;
        client.abort();
        await pending;
        // vestibule starts watching the client after CLIENT_WATCH_AFTER_MS (1 s): about a
        // second, not the 30 s timeout.
        for (let i = 0; i < 90 && (aborted === before || lines.length === 0); i++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.equal(aborted, before + 1, "the upstream still works for a client that is gone");
        const line = lines.pop()!;
        assert.equal(line.status, 499);
        assert.equal(line.error, "client_closed");
      });
    }
  } finally {
    release.resolve();
    await Promise.all([edge.close(), up.close(), web.close()]);
  }
});

Deno.test("access log and metrics: ambiguous and unavailable broadcasts say so", async (t) => {
  const loginOk = () =>
    new Response(null, { status: 302, headers: { "set-cookie": "sessionid=s; Path=/" } });
  const au = startUpstream(loginOk);
  const us = startUpstream(loginOk);
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [
      {
        name: "login",
        type: "broadcast",
        match: { path: "^/login$" },
        success: { status: [302] },
      },
      {
        name: "down",
        type: "broadcast",
        match: { path: "^/down$" },
        success: { status: [302] },
        timeout_ms: 1,
      },
    ],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)), metricsToken: TOKEN } });
  try {
    await t.step("two successes: ambiguous", async () => {
      const res = await fetch(`${edge.url}/login`, { method: "POST", body: "x" });
      await res.body?.cancel();
      assert.equal(res.status, 502);
      assert.equal(lines.at(-1)!.outcome, "ambiguous");
      assert.equal(lines.at(-1)!.error, "broadcast_ambiguous");
    });
    await t.step("nobody in time: unavailable", async () => {
      au.close();
      us.close();
      const res = await fetch(`${edge.url}/down`, { method: "POST", body: "x" });
      await res.body?.cancel();
      assert.ok(res.status === 502 || res.status === 504, String(res.status));
      assert.equal(lines.at(-1)!.outcome, "unavailable");
    });
    const scrape = await (await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })).text();
    assert.match(
      scrape,
      /^vestibule_broadcast_outcomes_total\{rule="login",outcome="ambiguous"\} 1$/m,
    );
    assert.match(
      scrape,
      /^vestibule_broadcast_outcomes_total\{rule="down",outcome="unavailable"\} 1$/m,
    );
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("metrics and access log: a broadcast region's duration is the time to its response headers", async () => {
  const au = startUpstream(() => new Response("no such user", { status: 401 }));
  // Headers after 150 ms; the JSON body the success rule reads ends 600 ms later.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const us = startUpstream(async () => {
    await new Promise((resolve) => setTimeout(resolve, 150));
    return new Response(
      new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"errors":'));
          timer = setTimeout(() => {
            c.enqueue(new TextEncoder().encode("[]}"));
            c.close();
          }, 600);
        },
        cancel: () => clearTimeout(timer),
      }),
      { headers: { "content-type": "application/json" } },
    );
  });
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{
      name: "signup",
      type: "broadcast",
      success: { status: "2xx", json: { path: "errors", equals: [] } },
    }],
  }, { deps: { metricsToken: TOKEN, log: (line) => lines.push(JSON.parse(line)) } });
  try {
    const res = await fetch(`${edge.url}/graphql`, { method: "POST", body: "{}" });
    assert.deepEqual(await res.json(), { errors: [] });
    const text = await (await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })).text();
    const sum = Number(
      text.match(/^vestibule_upstream_duration_seconds_sum\{upstream="us"\} (\S+)$/m)![1],
    );
    // Not 0, and not the 750 ms to the body's end.
    assert.ok(
      sum >= 0.14 && sum < 0.7,
      `us headers came after 150 ms; the histogram says ${sum} s`,
    );
    const regions = lines[0].regions as { region: string; ms: number }[];
    const ms = regions.find((r) => r.region === "us")!.ms;
    assert.ok(ms >= 140 && ms < 700, `us headers came after 150 ms; the log says ${ms} ms`);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("access log: an answer framed by chunks logs no bytes from the Content-Length the client never got", async () => {
  // An upstream that sends both (RFC 9112 §6.3: the chunks win, the length is dropped).
  const { raw, lines } = await getLogged(
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  );
  const head = raw.slice(0, raw.indexOf("\r\n\r\n")).toLowerCase();
  assert.doesNotMatch(head, /\r\ncontent-length:/, "the client got no Content-Length");
  assert.equal(lines.length, 1);
  // docs/observability.md: `bytes` is the size from Content-Length, "absent when the body
  // streams without one" (as it is when the same answer also carries a Set-Cookie).
  assert.equal(lines[0].bytes, undefined, `logged bytes: ${lines[0].bytes}, sent: 2`);
});

/** Sends one GET through vestibule to an upstream that answers `answer` (raw bytes). */
async function getLogged(answer: string) {
  const up = rawUpstream(() => answer);
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule(oneRegion(up.url), {
    deps: { log: (line: string) => lines.push(JSON.parse(line)) },
  });
  try {
    const raw = await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
    );
    return { raw, lines };
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
}

Deno.test("access log: an upstream's repeated Content-Length never logs bytes as null", async () => {
  // RFC 9110 §8.6: a recipient may take "2, 2" as 2; Deno's fetch hands the list over as it came.
  const { raw, lines } = await getLogged(
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
  );
  assert.match(raw, /\r\n\r\n(2\r\n)?ok/);
  assert.equal(lines.length, 1);
  assert.ok(
    lines[0].bytes === undefined || lines[0].bytes === 2,
    `logged bytes: ${JSON.stringify(lines[0].bytes)}`,
  );
});

// End-to-end: the access line's `bytes` for answers that carry a Content-Length but no body.
Deno.test("access log: wrong byte counts, a 304 or 204 answer counts no body bytes, whatever its Content-Length", async (t) => {
  for (const status of ["304 Not Modified", "204 No Content"]) {
    await t.step(status, async () => {
      // A 304 may state the selected representation's length (RFC 9110 §8.6); no body follows.
      const upstream = rawUpstream(() =>
        `HTTP/1.1 ${status}\r\nContent-Length: 1234\r\nETag: "v1"\r\nConnection: close\r\n\r\n`
      );
      const lines: Record<string, unknown>[] = [];
      const edge = startVestibule(oneRegion(upstream.url), {
        deps: { log: (line) => lines.push(JSON.parse(line)) },
      });
      try {
        const res = await fetch(`${edge.url}/page`, { headers: { "if-none-match": '"v1"' } });
        assert.equal(await res.text(), "");
        assert.equal(res.status, Number(status.slice(0, 3)));
        assert.equal(lines.length, 1);
        assert.equal(lines[0].status, res.status);
        assert.equal(lines[0].bytes, 0);
      } finally {
        await Promise.all([edge.close(), upstream.close()]);
      }
    });
  }
});

Deno.test("upstream failed: why a region is unavailable is on stderr (refused, not only 502), without path or query", async () => {
  const written: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void written.push(args.map(String).join(" "));
  // A port nothing listens on: the connection is refused. A region of its own, since lines are
  // one a second per upstream in the whole process.
  const edge = startVestibule({
    regions: { gone: { origin: DEAD_ORIGIN } },
    default_region: "gone",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    const res = await fetch(`${edge.url}/reset/s3cret?token=abc`);
    await res.body?.cancel();
    assert.equal(res.status, 502);
  } finally {
    console.error = original;
    await edge.close();
  }
  const lines = written.filter((l) => l.includes('"upstream failed"')).map((l) => JSON.parse(l));
  assert.equal(lines.length, 1, written.join("\n"));
  assert.deepEqual([lines[0].upstream, lines[0].error], ["gone", "upstream_unavailable"]);
  assert.match(lines[0].cause, /refused/i);
  assert.doesNotMatch(written.join("\n"), /s3cret|token/);
});
