/** End-to-end broadcast: every outcome against real regional upstreams on loopback. */
import assert from "node:assert/strict";
import type { AppDeps } from "../app.ts";
import {
  DEAD_ORIGIN,
  rawRequest,
  startUpstream,
  startVestibule,
  type TestServer,
} from "./_servers.ts";

type Handler = (req: Request) => Response | Promise<Response>;

const LOGIN_OK: Handler = () =>
  new Response(null, {
    status: 302,
    headers: [["location", "/"], ["set-cookie", "sessionid=abc; Path=/; HttpOnly"], [
      "set-cookie",
      "csrftoken=t; Path=/",
    ]],
  });
const LOGIN_FORM: Handler = () =>
  new Response("<form>No such user</form>", {
    status: 200,
    headers: { "content-type": "text/html" },
  });

async function withRegions(
  handlers: { au?: Handler | "dead"; us?: Handler | "dead" },
  rule: Record<string, unknown>,
  fn: (s: { edge: TestServer; au?: TestServer; us?: TestServer }) => Promise<void>,
  deps?: Partial<AppDeps>,
) {
  const servers: Partial<Record<"au" | "us", TestServer>> = {};
  const origins: Record<string, { origin: string }> = {};
  for (const id of ["au", "us"] as const) {
    const h = handlers[id];
    if (h === "dead") {
      origins[id] = { origin: DEAD_ORIGIN };
    } else {
      servers[id] = startUpstream(h);
      origins[id] = { origin: servers[id]!.url };
    }
  }
  const edge = startVestibule({
    regions: origins,
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { AU: "au" } },
    forward_cookies: ["csrftoken"],
    rules: [{
      name: "login",
      type: "broadcast",
      match: { methods: ["POST"], path: "^/accounts/login/$" },
      ...rule,
    }],
  }, { deps });
  try {
    await fn({ edge, ...servers });
  } finally {
    await Promise.all([edge.close(), ...Object.values(servers).map((s) => s.close())]);
  }
}

const LOGIN_RULE = { success: { status: [302], set_cookie: "sessionid" } };
const post = (edge: TestServer, init: RequestInit = {}) =>
  fetch(`${edge.url}/accounts/login/`, {
    method: "POST",
    redirect: "manual",
    body: "username=kim&password=secret",
    ...init,
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
      ...init.headers,
    },
  });

Deno.test("broadcast: exactly one success is returned unchanged and pins the browser to its region", () =>
  withRegions({ au: LOGIN_FORM, us: LOGIN_OK }, LOGIN_RULE, async ({ edge, au, us }) => {
    const res = await post(edge, {
      headers: { cookie: "__Host-vestibule-region=au; csrftoken=t0; sessionid=old" },
    });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "/");
    assert.deepEqual(res.headers.getSetCookie(), [
      "sessionid=abc; Path=/; HttpOnly",
      "csrftoken=t; Path=/",
      "__Host-vestibule-region=us; Max-Age=31536000; Path=/; HttpOnly; Secure; SameSite=Lax",
    ]);
    for (const region of [au!, us!]) {
      assert.equal(region.received.length, 1);
      assert.equal(
        new TextDecoder().decode(region.received[0].body),
        "username=kim&password=secret",
      );
      assert.equal(
        region.received[0].headers.get("cookie"),
        "csrftoken=t0",
        "only whitelisted cookies, never the pin",
      );
    }
  }));

Deno.test("broadcast: two successes are ambiguous unless allow_multiple_success", async (t) => {
  await t.step(
    "without: 502 broadcast_ambiguous, no pin",
    () =>
      withRegions({ au: LOGIN_OK, us: LOGIN_OK }, LOGIN_RULE, async ({ edge }) => {
        const res = await post(edge);
        assert.equal(res.status, 502);
        assert.equal((await res.json()).error, "broadcast_ambiguous");
        assert.deepEqual(res.headers.getSetCookie(), []);
      }),
  );
  await t.step("with: the assumed region's success wins and is pinned", () =>
    withRegions(
      { au: LOGIN_OK, us: LOGIN_OK },
      { ...LOGIN_RULE, allow_multiple_success: true },
      async ({ edge }) => {
        const res = await post(edge, { headers: { "cf-ipcountry": "AU" } });
        await res.body?.cancel();
        assert.equal(res.status, 302);
        assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au;/);
      },
    ));
  await t.step("with, no geo: region order decides after the default region", () =>
    withRegions(
      { au: LOGIN_OK, us: LOGIN_OK },
      { ...LOGIN_RULE, allow_multiple_success: true },
      async ({ edge }) => {
        const res = await post(edge);
        await res.body?.cancel();
        assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=us;/);
      },
    ));
});

Deno.test("broadcast: a region that refuses connections does not break the owner's login", () =>
  withRegions({ au: "dead", us: LOGIN_OK }, LOGIN_RULE, async ({ edge }) => {
    const res = await post(edge);
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.match(res.headers.getSetCookie().at(-1)!, /region=us;/);
  }));

Deno.test("broadcast: a region that hangs past the timeout costs the timeout, not more", async () => {
  const release = Promise.withResolvers<void>();
  await withRegions(
    {
      au: async () => {
        await release.promise;
        return new Response("late");
      },
      us: LOGIN_OK,
    },
    { ...LOGIN_RULE, timeout_ms: 500 },
    async ({ edge }) => {
      try {
        const started = performance.now();
        const res = await post(edge);
        const elapsed = performance.now() - started;
        await res.body?.cancel();
        assert.equal(res.status, 302);
        // Tight enough that a deadline of twice the timeout fails, loose enough for a busy CI.
        assert.ok(elapsed >= 490 && elapsed < 900, `answered after ${elapsed} ms`);
      } finally {
        release.resolve(); // A failed assertion must not leave the origin hanging the test.
      }
    },
  );
});

Deno.test("broadcast: with no usable response it answers 502 broadcast_unavailable, or 504 when all timed out", async (t) => {
  await t.step(
    "all refused",
    () =>
      withRegions({ au: "dead", us: "dead" }, LOGIN_RULE, async ({ edge }) => {
        const res = await post(edge);
        assert.equal(res.status, 502);
        assert.equal((await res.json()).error, "broadcast_unavailable");
      }),
  );
  const release = Promise.withResolvers<void>();
  const hang: Handler = async () => {
    await release.promise;
    return new Response("late");
  };
  await t.step(
    "all timed out",
    () =>
      withRegions({ au: hang, us: hang }, { ...LOGIN_RULE, timeout_ms: 300 }, async ({ edge }) => {
        try {
          const started = performance.now();
          const res = await post(edge);
          const elapsed = performance.now() - started;
          assert.equal(res.status, 504);
          assert.equal((await res.json()).error, "upstream_timeout");
          assert.ok(elapsed >= 290 && elapsed < 600, `answered after ${elapsed} ms`);
        } finally {
          release.resolve();
        }
      }),
  );
});

Deno.test("broadcast: with no success the best failure is returned, without a pin", async (t) => {
  await t.step(
    "a non-5xx beats a 5xx",
    () =>
      withRegions(
        { au: LOGIN_FORM, us: () => new Response("boom", { status: 503 }) },
        LOGIN_RULE,
        async ({ edge }) => {
          const res = await post(edge);
          assert.equal(res.status, 200);
          assert.equal(await res.text(), "<form>No such user</form>");
          assert.deepEqual(res.headers.getSetCookie(), []);
        },
      ),
  );
  await t.step("a failure matching prefer_failure beats the assumed region's", () =>
    withRegions(
      {
        au: () => new Response("wrong password (au owns you)", { status: 401 }),
        us: () => new Response("no such user in us", { status: 200 }),
      },
      { ...LOGIN_RULE, prefer_failure: { status: [401] } },
      async ({ edge }) => {
        const res = await post(edge);
        assert.equal(res.status, 401);
        assert.equal(await res.text(), "wrong password (au owns you)");
        assert.deepEqual(res.headers.getSetCookie(), []);
      },
    ));
  await t.step("among equals, the assumed region's answer", () =>
    withRegions(
      {
        au: () => new Response("au says no", { status: 401 }),
        us: () => new Response("us says no", { status: 401 }),
      },
      LOGIN_RULE,
      async ({ edge }) => {
        let res = await post(edge, { headers: { "cf-ipcountry": "AU" } });
        assert.equal(await res.text(), "au says no");
        res = await post(edge);
        assert.equal(await res.text(), "us says no");
      },
    ));
});

Deno.test("broadcast: a JSON success rule reads the body and still returns it intact", async (t) => {
  const rule = { success: { status: "2xx", json: { path: "errors", equals: [] } } };
  await t.step("GraphQL-style: empty errors wins", () =>
    withRegions(
      {
        au: () => Response.json({ data: null, errors: [{ message: "no such class" }] }),
        us: () => Response.json({ data: { joinClass: { ok: true } }, errors: [] }),
      },
      rule,
      async ({ edge }) => {
        const res = await post(edge, { body: '{"operationName":"JoinClass"}' });
        assert.equal(res.status, 200);
        assert.deepEqual(await res.json(), { data: { joinClass: { ok: true } }, errors: [] });
        assert.match(res.headers.getSetCookie()[0], /region=us;/);
      },
    ));
  await t.step("a non-JSON body is no success, and no crash", () =>
    withRegions(
      { au: () => new Response("<html>not json</html>"), us: () => new Response("{broken") },
      rule,
      async ({ edge }) => {
        const res = await post(edge);
        assert.equal(res.status, 200);
        assert.equal(await res.text(), "{broken");
        assert.deepEqual(res.headers.getSetCookie(), []);
      },
    ));
});

Deno.test("broadcast: a large Set-Cookie set is preserved cookie by cookie", () => {
  const cookies = Array.from(
    { length: 40 },
    (_, i) => `c${i}=${"v".repeat(100)}${i}; Path=/; HttpOnly`,
  );
  return withRegions(
    {
      au: LOGIN_FORM,
      us: () =>
        new Response(null, {
          status: 302,
          headers: [
            ["location", "/"],
            ["set-cookie", "sessionid=abc"],
            ...cookies.map((c) => ["set-cookie", c] as [string, string]),
          ],
        }),
    },
    LOGIN_RULE,
    async ({ edge }) => {
      const res = await post(edge);
      await res.body?.cancel();
      const got = res.headers.getSetCookie();
      assert.equal(got.length, 42);
      assert.deepEqual(got.slice(1, 41), cookies);
    },
  );
});

Deno.test("broadcast: with allow_multiple_success the preferred region's fast success answers without waiting", async () => {
  const release = Promise.withResolvers<void>();
  await withRegions(
    {
      au: async () => {
        await release.promise;
        return LOGIN_OK(new Request("http://x"));
      },
      us: LOGIN_OK,
    },
    { ...LOGIN_RULE, allow_multiple_success: true, timeout_ms: 5000 },
    async ({ edge }) => {
      try {
        const started = performance.now();
        const res = await post(edge);
        await res.body?.cancel();
        assert.ok(performance.now() - started < 1000);
        assert.match(res.headers.getSetCookie().at(-1)!, /region=us;/);
      } finally {
        // A failed assertion must not leave au's handler waiting, or closing the servers hangs.
        release.resolve();
      }
    },
  );
});

Deno.test("broadcast: with allow_multiple_success the log keeps a region that answered without being awaited", async () => {
  // au fails at once; us, the assumed and so preferred region, succeeds 150 ms later.
  const au = startUpstream(() => new Response("down", { status: 503 }));
  const us = startUpstream(async () => {
    await new Promise((resolve) => setTimeout(resolve, 150));
    return LOGIN_OK(new Request("http://x"));
  });
  const lines: string[] = [];
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "login", type: "broadcast", ...LOGIN_RULE, allow_multiple_success: true }],
  }, { deps: { log: (line) => lines.push(line) } });
  try {
    const res = await post(edge);
    await res.body?.cancel();
    assert.equal(res.status, 302);
    const { regions } = JSON.parse(lines[0]);
    assert.deepEqual(
      regions.map(({ region, status, error }: Record<string, unknown>) => ({
        region,
        status,
        error,
      })),
      [{ region: "au", status: 503, error: undefined }, {
        region: "us",
        status: 302,
        error: undefined,
      }],
    );
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("broadcast: each region gets the request as a regional one would, with the rule's own cookie list", async () => {
  const au = startUpstream(LOGIN_FORM);
  const us = startUpstream(LOGIN_OK);
  const edge = startVestibule({
    regions: {
      au: { origin: au.url, headers: { "x-origin-secret": "au-secret" } },
      us: { origin: us.url },
    },
    default_region: "us",
    forward_cookies: ["csrftoken"],
    rules: [{
      name: "login",
      type: "broadcast",
      match: { methods: ["POST"], path: "^/accounts/login/$" },
      forward_cookies: ["lang"],
      ...LOGIN_RULE,
    }],
  });
  try {
    const bytes = new Uint8Array([0, 0xff, 0xfe, 0x80, 0x0a, 0xc3]); // not valid UTF-8
    const res = await fetch(`${edge.url}/accounts/login/?next=%2Fhome`, {
      method: "POST",
      redirect: "manual",
      body: bytes,
      headers: {
        cookie: "lang=fr; csrftoken=t; __Host-vestibule-region=au",
        "x-vestibule-region": "au",
        "x-origin-secret": "forged",
        "x-forwarded-for": "10.9.9.9",
      },
    });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    for (const region of [au, us]) {
      const got = region.received[0];
      assert.equal(got.method, "POST");
      assert.equal(got.path + got.query, "/accounts/login/?next=%2Fhome");
      assert.deepEqual(got.body, bytes, "the same bytes, not a text round trip");
      assert.equal(got.headers.get("cookie"), "lang=fr", "the rule's list, not the file's");
      assert.equal(got.headers.get("x-vestibule-region"), null);
      assert.equal(got.headers.get("x-forwarded-host"), new URL(edge.url).host);
      assert.equal(got.headers.get("x-forwarded-proto"), "http");
      assert.equal(got.headers.get("x-forwarded-for"), "127.0.0.1");
      assert.match(got.headers.get("x-request-id")!, /^[0-9a-f-]{36}$/);
    }
    assert.equal(au.received[0].headers.get("x-origin-secret"), "au-secret");
    // An origin that configures no such header gets the client's, as on a regional route.
    assert.equal(us.received[0].headers.get("x-origin-secret"), "forged");
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("broadcast: a body over body_limit_bytes is 413 body_too_large and no region is called", async (t) => {
  const au = startUpstream(LOGIN_FORM);
  const us = startUpstream(LOGIN_OK);
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    body_limit_bytes: 16,
    rules: [{
      name: "login",
      type: "broadcast",
      match: { methods: ["POST"], path: "^/accounts/login/$" },
      ...LOGIN_RULE,
    }],
  });
  try {
    const big = "x".repeat(64);
    const streamed = () => new Blob([big]).stream(); // no Content-Length: found while reading
    for (const [name, body] of [["declared length", big], ["streamed", streamed()]] as const) {
      await t.step(name, async () => {
        const res = await post(
          edge,
          { body, ...(typeof body === "string" ? {} : { duplex: "half" }) } as RequestInit,
        );
        assert.equal(res.status, 413);
        assert.equal((await res.json()).error, "body_too_large");
      });
    }
    assert.equal(au.received.length + us.received.length, 0);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("broadcast: a sessionid that a later Set-Cookie of the answer clears is no login", () =>
  withRegions(
    {
      // Not the owner: sets an anonymous session, then clears it in the same answer.
      au: () =>
        new Response(null, {
          status: 302,
          headers: [
            ["location", "/"],
            ["set-cookie", "sessionid=anon; Path=/"],
            ["set-cookie", "sessionid=; Max-Age=0; Path=/"],
          ],
        }),
      us: LOGIN_OK,
    },
    LOGIN_RULE,
    async ({ edge }) => {
      const res = await post(edge);
      await res.body?.cancel();
      assert.equal(res.status, 302);
      assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=us;/);
    },
  ));

Deno.test("broadcast: a sessionid cleared without a Path (default path /) is no login", async () => {
  // Django's delete_cookie sets Path=/, but many apps clear without one; for the request path
  // /login the default path is "/" (RFC 6265 §5.1.4), so a browser ends with no sessionid.
  const au = startUpstream(() =>
    new Response(null, {
      status: 302,
      headers: [
        ["location", "/"],
        ["set-cookie", "sessionid=anon; Path=/"],
        ["set-cookie", "sessionid=; Max-Age=0"],
      ],
    })
  );
  const us = startUpstream(() =>
    new Response(null, {
      status: 302,
      headers: [["location", "/"], ["set-cookie", "sessionid=abc; Path=/"]],
    })
  );
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "login", type: "broadcast", ...LOGIN_RULE }],
  });
  try {
    const res = await fetch(`${edge.url}/login`, {
      method: "POST",
      body: "u=k",
      redirect: "manual",
    });
    await res.body?.cancel();
    assert.equal(res.status, 302, "us is the only region whose browser keeps a sessionid");
    assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=us;/);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("broadcast: an Expires with a two-digit year 50-69 is in the 2000s (RFC 6265 5.1.1)", () =>
  withRegions(
    {
      au: LOGIN_FORM,
      us: () =>
        new Response(null, {
          status: 302,
          headers: [
            ["location", "/"],
            ["set-cookie", "sessionid=abc; Expires=Thu, 01-Jan-60 00:00:00 GMT; Path=/"],
          ],
        }),
    },
    LOGIN_RULE,
    async ({ edge }) => {
      const res = await post(edge);
      await res.body?.cancel();
      assert.equal(res.status, 302, "browsers keep this cookie until 2060");
      assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=us;/);
    },
  ));

Deno.test("broadcast: a client that hangs up mid-broadcast is logged as 499 client_closed, not a region failure", async () => {
  const release = Promise.withResolvers<void>();
  const hang: Handler = async (req) => {
    await Promise.race([
      release.promise,
      new Promise((r) => req.signal.addEventListener("abort", r)),
    ]);
    return new Response("late");
  };
  const us = startUpstream(hang);
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { au: { origin: DEAD_ORIGIN }, us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "login", type: "broadcast", ...LOGIN_RULE }],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)) } });
  try {
    const gone = new AbortController();
    const call = post(edge, { signal: gone.signal }).catch(() => {});
    await new Promise((r) => setTimeout(r, 200)); // au was refused at once; us is holding
    gone.abort();
    await call;
    for (let i = 0; i < 50 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(lines.length, 1);
    assert.equal(lines[0].status, 499);
    assert.equal(lines[0].error, "client_closed");
    assert.notEqual(lines[0].outcome, "unavailable");
    const regions = lines[0].regions as Array<{ region: string; error?: string }>;
    assert.deepEqual(regions.map((r) => [r.region, r.error]), [
      ["au", "unavailable"], // its own fault, before the client left: a real outage stays visible
      ["us", "client_closed"],
    ]);
  } finally {
    release.resolve();
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("false login: a region's Set-Cookie that the browser would refuse is no success", async (t) => {
  const cases: Array<[string, string, string]> = [
    [
      "a Domain that is not the public host's",
      "sessionid",
      "sessionid=x; Domain=au.example.com; Path=/",
    ],
    ["__Host- without Secure", "__Host-session", "__Host-session=x; Path=/"],
    ["__Host- with a Path other than /", "__Host-session", "__Host-session=x; Path=/a; Secure"],
    ["__Secure- without Secure", "__Secure-session", "__Secure-session=x; Path=/"],
  ];
  for (const [label, name, auCookie] of cases) {
    await t.step(label, async () => {
      const au = startUpstream(() =>
        new Response(null, { status: 302, headers: { location: "/", "set-cookie": auCookie } })
      );
      const us = startUpstream(() =>
        new Response(null, {
          status: 302,
          headers: { location: "/", "set-cookie": `${name}=owner; Path=/; Secure; HttpOnly` },
        })
      );
      const edge = startVestibule({
        regions: { au: { origin: au.url }, us: { origin: us.url } },
        default_region: "us",
        rules: [{ name: "login", type: "broadcast", success: { status: [302], set_cookie: name } }],
      });
      try {
        const res = await fetch(`${edge.url}/accounts/login/`, {
          method: "POST",
          redirect: "manual",
          body: "username=kim",
          headers: { accept: "application/json" },
        });
        await res.body?.cancel();
        // Without the check: 502 broadcast_ambiguous, and a user who can log in cannot.
        assert.equal(res.status, 302);
        assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=us;/);
      } finally {
        await Promise.all([edge.close(), au.close(), us.close()]);
      }
    });
  }
});

Deno.test("false login: a sessionid with SameSite=None but no Secure, which Chrome refuses, is no success", () =>
  withRegions(
    {
      au: () =>
        new Response(null, {
          status: 302,
          headers: { location: "/", "set-cookie": "sessionid=x; Path=/; SameSite=None" },
        }),
      us: () =>
        new Response(null, {
          status: 302,
          headers: {
            location: "/",
            "set-cookie": "sessionid=owner; Path=/; Secure; SameSite=None",
          },
        }),
    },
    LOGIN_RULE,
    async ({ edge }) => {
      const res = await post(edge);
      const text = await res.text();
      assert.equal(res.status, 302, text);
      assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=us;/);
    },
  ));

Deno.test("metrics: a region that answered a broadcast the client then left is still counted in the upstream histogram", async () => {
  const release = Promise.withResolvers<void>();
  const lines: Record<string, unknown>[] = [];
  const token = "t0123456789abcdef";
  await withRegions(
    {
      au: () => new Response("no such user", { status: 200 }),
      us: async (req) => {
        await Promise.race([
          release.promise,
          new Promise((resolve) => req.signal.addEventListener("abort", resolve)),
        ]);
        return new Response("late");
      },
    },
    LOGIN_RULE,
    async ({ edge, au }) => {
      try {
        const gone = new AbortController();
        const call = post(edge, { signal: gone.signal }).catch(() => {});
        while (au!.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        await new Promise((resolve) => setTimeout(resolve, 100)); // au has answered; us holds on
        gone.abort();
        await call;
        for (let i = 0; i < 50 && lines.length === 0; i++) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        const regions = lines[0].regions as Array<{ region: string; status?: number }>;
        assert.equal(
          regions.find((r) => r.region === "au")?.status,
          200,
          "the log says au answered",
        );
        const text = await (await fetch(`${edge.url}/_vestibule/metrics`, {
          headers: { authorization: `Bearer ${token}` },
        })).text();
        // docs/observability.md: every answering region of a broadcast counts.
        assert.match(text, /^vestibule_upstream_duration_seconds_count\{upstream="au"\} 1$/m);
      } finally {
        release.resolve();
      }
    },
    { log: (line) => lines.push(JSON.parse(line)), metricsToken: token },
  );
});

Deno.test("false failure: a sessionid of 4096 octets with UTF-8 in its value is a login (octets as sent, not re-encoded)", async (t) => {
  // Header text from `fetch` holds one character per octet received: é sent as UTF-8 arrives as
  // the two characters "Ã©". RFC 6265bis §5.7 counts those octets, up to 4096 for name and value.
  const latin1 = (text: string) => String.fromCharCode(...new TextEncoder().encode(text));
  for (
    const [label, octets, login] of [
      ["4096 octets: stored, a login", 4096, true],
      ["4097 octets: not stored, no login", 4097, false],
    ] as const
  ) {
    await t.step(label, () => {
      const value = "é".repeat(1000) + "v".repeat(octets - "sessionid".length - 2000);
      assert.equal(new TextEncoder().encode(`sessionid${value}`).length, octets);
      const login_ok: Handler = () =>
        new Response(null, {
          status: 302,
          headers: { location: "/", "set-cookie": `sessionid=${latin1(value)}; Path=/` },
        });
      return withRegions({ au: LOGIN_FORM, us: login_ok }, LOGIN_RULE, async ({ edge }) => {
        const res = await post(edge);
        await res.body?.cancel();
        // Only a success pins the browser (with none, the best failure is returned unpinned).
        const pinned = res.headers.getSetCookie().some((c) =>
          c.startsWith("__Host-vestibule-region=us;")
        );
        assert.equal(pinned, login);
      });
    });
  }
});

Deno.test("false login: a sessionid whose Expires has passed on the router's clock is no login", () => {
  // 2100-01-01 on the injected clock; the cookie expired the day before, long after today, so
  // only a router reading its own clock (not the machine's) sees it expired.
  const expired: Handler = () =>
    new Response(null, {
      status: 302,
      headers: [
        ["location", "/"],
        ["set-cookie", "sessionid=abc; Expires=Thu, 31 Dec 2099 00:00:00 GMT; Path=/"],
      ],
    });
  return withRegions({ au: LOGIN_FORM, us: expired }, LOGIN_RULE, async ({ edge }) => {
    const res = await post(edge);
    await res.body?.cancel();
    assert.ok(
      !res.headers.getSetCookie().some((c) => c.startsWith("__Host-vestibule-region=")),
      "a browser drops an expired sessionid: nobody is logged in, nobody is pinned",
    );
    // No success: the best failure, both non-5xx, comes from the default region, us.
    assert.equal(res.status, 302);
  }, { now: () => Date.UTC(2100, 0, 1) });
});

Deno.test("false outage: a broadcast HEAD that declares Content-Length: 0 reaches the regions, not 502", async () => {
  const us = startUpstream(() => new Response("hello", { status: 200 }));
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "probe", type: "broadcast", success: { status: "2xx" } }],
  });
  try {
    // `fetch` refuses a HEAD with a body: one that only declares an empty one is still no body.
    const answer = await rawRequest(
      edge.port,
      "HEAD /status HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 0\r\n" +
        "Connection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.equal(us.received.length, 1);
    assert.equal(us.received[0].method, "HEAD");
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

/** Access-log lines `startVestibule` writes, parsed, for `withRegions`' deps. */
function accessLines() {
  const lines: Record<string, unknown>[] = [];
  return { lines, deps: { log: (line: string) => lines.push(JSON.parse(line)) } };
}

Deno.test("wrong region: with allow_multiple_success a preferred region's failure does not hide the owner's login", () => {
  const { lines, deps } = accessLines();
  return withRegions(
    { au: LOGIN_OK, us: LOGIN_FORM }, // us, the default and so preferred region, fails at once
    { ...LOGIN_RULE, allow_multiple_success: true },
    async ({ edge }) => {
      const res = await post(edge);
      await res.body?.cancel();
      assert.equal(res.status, 302);
      assert.match(res.headers.getSetCookie().at(-1)!, /__Host-vestibule-region=au;/);
      assert.deepEqual([lines[0].outcome, lines[0].region], ["success", "au"]);
    },
    deps,
  );
});

Deno.test("false outage: a broadcast GET that declares Content-Length: 0 reaches every region, not 502", () =>
  withRegions(
    {
      au: () => new Response("au", { status: 404 }),
      us: () => new Response("us", { status: 200 }),
    },
    { match: { path: "^/status$" }, success: { status: "2xx" } },
    async ({ edge, au, us }) => {
      // `fetch` refuses a GET with a body, even an empty one: a declared empty one is no body.
      const answer = await rawRequest(
        edge.port,
        "GET /status HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 0\r\n" +
          "Connection: close\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.deepEqual([au!.received.length, us!.received.length], [1, 1]);
    },
  ));

Deno.test("access log: a broadcast failure names the region whose answer the client got", () => {
  const { lines, deps } = accessLines();
  return withRegions(
    {
      au: () => new Response("wrong password (au owns you)", { status: 401 }),
      us: () => new Response("down", { status: 503 }),
    },
    { ...LOGIN_RULE, prefer_failure: { status: [401] } },
    async ({ edge }) => {
      const res = await post(edge); // us is the assumed region, yet au's failure is the best
      assert.equal(await res.text(), "wrong password (au owns you)");
      assert.deepEqual([lines[0].outcome, lines[0].region], ["failure", "au"]);
    },
    deps,
  );
});

Deno.test("access log: a region cut off by a client that hung up keeps how long it had been out", async () => {
  const { lines, deps } = accessLines();
  const release = Promise.withResolvers<void>();
  const reached = Promise.withResolvers<void>();
  const hang: Handler = async (req) => {
    reached.resolve();
    await Promise.race([
      release.promise,
      new Promise((r) => req.signal.addEventListener("abort", r)),
    ]);
    return new Response("late");
  };
  await withRegions({ au: LOGIN_FORM, us: hang }, LOGIN_RULE, async ({ edge }) => {
    try {
      const gone = new AbortController();
      const sent = post(edge, { signal: gone.signal }).catch(() => {});
      await reached.promise;
      const heldFrom = performance.now();
      await new Promise((r) => setTimeout(r, 150));
      gone.abort();
      await sent;
      const waited = performance.now() - heldFrom;
      for (let i = 0; i < 100 && lines.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(lines[0].status, 499);
      const us = (lines[0].regions as { region: string; error?: string; ms: number }[])
        .find((r) => r.region === "us")!;
      assert.equal(us.error, "client_closed");
      assert.ok(us.ms >= 140 && us.ms <= waited + 1000, `us was out ${us.ms} ms`);
    } finally {
      release.resolve();
    }
  }, deps);
});

Deno.test("wrong answer: the shipped signup rule returns the class region's 'name taken' byte for byte", () => {
  // rules.json's signup: success and prefer_failure both read the JSON body of a 200.
  const { lines, deps } = accessLines();
  const taken = '{"data":{"signup":{"ok":false,"reason":"name taken"}}}';
  const elsewhere = '{"data":{"signup":null},"errors":[{"message":"class not in region"}]}';
  const json = (text: string) => () =>
    new Response(text, { headers: { "content-type": "application/json" } });
  return withRegions(
    { au: json(taken), us: json(elsewhere) },
    {
      success: { status: "2xx", json: { path: "data.signup.ok", equals: true } },
      prefer_failure: { status: "2xx", json: { path: "data.signup.ok", equals: false } },
    },
    async ({ edge }) => {
      const res = await post(edge);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), taken);
      assert.deepEqual(res.headers.getSetCookie(), [], "a failure pins nobody");
      assert.deepEqual([lines[0].outcome, lines[0].region], ["failure", "au"]);
    },
    deps,
  );
});

Deno.test("false login: a success header check is no success for an answer without that header", () => {
  const { lines, deps } = accessLines();
  return withRegions(
    {
      au: () => new Response("welcome", { headers: { "x-login-user": "kim" } }),
      us: () => new Response("no such user"), // the same status, but no header at all
    },
    { success: { status: "2xx", headers: { "x-login-user": ".+" } } },
    async ({ edge }) => {
      const res = await post(edge);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "welcome");
      assert.match(res.headers.getSetCookie().at(-1)!, /__Host-vestibule-region=au;/);
      assert.equal(lines[0].outcome, "success");
    },
    deps,
  );
});

Deno.test("slow region: a broadcast without its own timeout_ms waits a hanging region's timeout_ms, not the 30 s default", async () => {
  const release = Promise.withResolvers<void>();
  const au = startUpstream(async () => {
    await release.promise;
    return new Response("late");
  });
  const us = startUpstream(LOGIN_OK);
  const edge = startVestibule({
    regions: { au: { origin: au.url, timeout_ms: 300 }, us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "login", type: "broadcast", ...LOGIN_RULE }],
  });
  try {
    const started = performance.now();
    // Far past au's 300 ms, far short of 30 s.
    const res = await post(edge, { signal: AbortSignal.timeout(5_000) });
    const elapsed = performance.now() - started;
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.ok(elapsed >= 290 && elapsed < 2_000, `answered after ${elapsed} ms`);
  } finally {
    release.resolve();
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
