/** End-to-end broadcast: every outcome against real regional upstreams on loopback. */
import assert from "node:assert/strict";
import { deadPort, startUpstream, startVestibule, type TestServer } from "./_servers.ts";

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
) {
  const servers: Partial<Record<"au" | "us", TestServer>> = {};
  const origins: Record<string, { origin: string }> = {};
  for (const id of ["au", "us"] as const) {
    const h = handlers[id];
    if (h === "dead") {
      origins[id] = { origin: `http://127.0.0.1:${deadPort()}` };
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
  });
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
    { ...LOGIN_RULE, timeout_ms: 300 },
    async ({ edge }) => {
      const started = performance.now();
      const res = await post(edge);
      const elapsed = performance.now() - started;
      await res.body?.cancel();
      assert.equal(res.status, 302);
      assert.ok(elapsed >= 290 && elapsed < 1500, `answered after ${elapsed} ms`);
      release.resolve();
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
      withRegions({ au: hang, us: hang }, { ...LOGIN_RULE, timeout_ms: 100 }, async ({ edge }) => {
        const res = await post(edge);
        assert.equal(res.status, 504);
        assert.equal((await res.json()).error, "upstream_timeout");
        release.resolve();
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
      const started = performance.now();
      const res = await post(edge);
      await res.body?.cancel();
      assert.ok(performance.now() - started < 1000);
      assert.match(res.headers.getSetCookie().at(-1)!, /region=us;/);
      release.resolve();
    },
  );
});
