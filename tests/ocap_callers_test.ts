/** OCAP as its callers depend on it: sharing across instances, redirects, and what operators see. */
import assert from "node:assert/strict";
import { DEAD_ORIGIN, rawUpstream, startUpstream, startVestibule } from "./_servers.ts";
import { OCAP_ENV, ocapRules, tokenRequest } from "./_ocap.ts";
import { explainRequest } from "../lib/explain.ts";
import { parseRules } from "../lib/load_rules.ts";

/**
 * Two instances on one KV file, `ttl_seconds: 1`, the second's clock 1.5 s ahead (under the 2 s of
 * skew docs/ocap.md allows for); `fn` gets their URLs. The provider is closed after.
 */
async function skewedPair(
  provider: { url: string; close(): Promise<void> },
  fn: (owner: string, ahead: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ocap_kv_" });
  const kv = await Deno.openKv(`${dir}/kv.sqlite3`);
  const rules = ocapRules(provider.url, { ttlSeconds: 1 });
  const owner = startVestibule(rules, { env: OCAP_ENV, deps: { kv } });
  const ahead = startVestibule(rules, {
    env: OCAP_ENV,
    deps: { kv, now: () => Date.now() + 1_500 },
  });
  try {
    await fn(owner.url, ahead.url);
  } finally {
    await Promise.all([owner.close(), ahead.close(), provider.close()]);
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("OCAP double spend: a caller waiting on another instance's call gets its answer, also when its clock is ahead by more than the TTL", async () => {
  let calls = 0;
  const provider = startUpstream(async () => {
    const call = ++calls;
    await new Promise((resolve) => setTimeout(resolve, 300));
    return Response.json({ access_token: `token-${call}` });
  });
  await skewedPair(provider, async (owner, ahead) => {
    const first = fetch(tokenRequest(owner));
    while (provider.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    const second = await fetch(tokenRequest(ahead));
    const answers = [await (await first).text(), await second.text()];
    assert.equal(calls, 1, `the provider was called ${calls} times; callers got ${answers}`);
    assert.equal(second.headers.get("ocap-cache"), "coalesced");
    assert.deepEqual(answers, ['{"access_token":"token-1"}', '{"access_token":"token-1"}']);
  });
});

Deno.test("OCAP double spend: a caller arriving just after the answer was stored, on an instance 1.5 s ahead, gets it instead of calling the provider again", async () => {
  let calls = 0;
  const provider = startUpstream(() => Response.json({ access_token: `token-${++calls}` }));
  await skewedPair(provider, async (owner, ahead) => {
    const first = await fetch(tokenRequest(owner));
    assert.equal(await first.text(), '{"access_token":"token-1"}');
    // Well within the owner's 1 s TTL.
    const second = await fetch(tokenRequest(ahead));
    const body = await second.text();
    assert.equal(
      calls,
      1,
      `the provider redeemed the code ${calls} times; the late caller got ${body}`,
    );
    assert.equal(second.headers.get("ocap-cache"), "hit");
    assert.equal(body, '{"access_token":"token-1"}');
  });
});

Deno.test("OCAP metrics and log: an origin call that failed counts as a miss and as its target's upstream error", async () => {
  const token = "metrics-token-0123456789";
  const provider = startUpstream(async () => {
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // past the 300 ms timeout
    return Response.json({ access_token: "late" });
  });
  const kv = await Deno.openKv(":memory:");
  const rules = ocapRules(provider.url, { timeoutMs: 300 }) as {
    ocap: { targets: Record<string, unknown> };
  };
  rules.ocap.targets.down = { origin: DEAD_ORIGIN };
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule(rules, {
    env: OCAP_ENV,
    deps: { kv, metricsToken: token, log: (line) => lines.push(JSON.parse(line)) },
  });
  try {
    const refused = await fetch(tokenRequest(edge.url, { path: "/_ocap/down/token" }));
    assert.equal(refused.status, 502);
    await refused.body?.cancel();
    const slow = await fetch(tokenRequest(edge.url));
    assert.equal(slow.status, 504);
    await slow.body?.cancel();
    assert.equal(provider.received.length, 1, "the slow provider was called");
    const scrape = await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const text = await scrape.text();
    assert.match(text, /^vestibule_ocap_cache_total\{result="miss"\} 2$/m, text);
    // Which provider is down, as a region or global upstream would be named.
    assert.match(
      text,
      /^vestibule_upstream_errors_total\{upstream="down",error="upstream_unavailable"\} 1$/m,
    );
    assert.match(
      text,
      /^vestibule_upstream_errors_total\{upstream="provider",error="upstream_timeout"\} 1$/m,
    );
    assert.deepEqual(
      lines.filter((l) => l.path !== "/_vestibule/metrics")
        .map((l) => [l.upstream, l.outcome, l.error]),
      [["down", "miss", "upstream_unavailable"], ["provider", "miss", "upstream_timeout"]],
    );
  } finally {
    await Promise.all([edge.close(), provider.close()]);
    kv.close();
  }
});

Deno.test("OCAP wrong routing: a provider's relative redirect keeps the caller on the target, not on the edge's regional route", async () => {
  // The provider moved its token endpoint; a client that follows a 308 (fetch, Python requests)
  // resolves the Location against the URL it called: the OCAP mount on the edge.
  const provider = startUpstream((req) =>
    new URL(req.url).pathname === "/token"
      ? new Response(null, { status: 308, headers: { location: "/oauth2/v2/token" } })
      : Response.json({ access_token: "moved" })
  );
  const region = startUpstream();
  const kv = await Deno.openKv(":memory:");
  const rules = ocapRules(provider.url) as { regions: Record<string, { origin: string }> };
  rules.regions.us = { origin: region.url };
  const edge = startVestibule(rules, { env: OCAP_ENV, deps: { kv } });
  try {
    const res = await fetch(tokenRequest(edge.url)); // redirect: "follow"
    const body = await res.text();
    assert.deepEqual(
      region.received.map((r) => [r.method, r.path, r.headers.has("ocap-key")]),
      [],
      `the token request reached a regional monolith: ${
        JSON.stringify(
          region.received.map((r) => [r.method, r.path, r.headers.has("ocap-key"), r.body.length]),
        )
      }`,
    );
    assert.deepEqual(provider.received.map((r) => r.path), ["/token", "/oauth2/v2/token"]);
    assert.equal(body, '{"access_token":"moved"}');
  } finally {
    await Promise.all([edge.close(), provider.close(), region.close()]);
    kv.close();
  }
});

Deno.test("OCAP wrong routing: a provider redirect moved under the mount keeps its query and fragment", async (t) => {
  const provider = startUpstream((req) => {
    const to = new URL(req.url).searchParams.get("to")!;
    return new Response(null, { status: 302, headers: { location: to } });
  });
  const kv = await Deno.openKv(":memory:");
  const edge = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    for (
      const [what, location, expected] of [
        [
          "relative",
          "/oauth2/v2/token?tenant=acme&state=xyz",
          "/_ocap/provider/oauth2/v2/token?tenant=acme&state=xyz",
        ],
        [
          "absolute, on the target's origin",
          `${provider.url}/authorize?client_id=app#frag`,
          "/_ocap/provider/authorize?client_id=app#frag",
        ],
      ]
    ) {
      await t.step(what, async () => {
        const res = await fetch(
          tokenRequest(edge.url, {
            path: `/_ocap/provider/token?to=${encodeURIComponent(location)}`,
          }),
          { redirect: "manual" },
        );
        await res.body?.cancel();
        assert.equal(res.status, 302);
        assert.equal(res.headers.get("location"), expected);
      });
    }
  } finally {
    await Promise.all([edge.close(), provider.close()]);
    kv.close();
  }
});

Deno.test("OCAP answer sharing: a caller without validators does not get the 304 another caller's If-None-Match earned", async () => {
  // A JWKS (or userinfo) fetch: one client revalidates its copy, another has none.
  const provider = startUpstream((req) =>
    req.headers.get("if-none-match") === '"v1"'
      ? new Response(null, { status: 304, headers: { etag: '"v1"' } })
      : Response.json({ keys: ["k1"] }, { headers: { etag: '"v1"' } })
  );
  const kv = await Deno.openKv(":memory:");
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule(ocapRules(provider.url), {
    env: OCAP_ENV,
    deps: { kv, log: (line) => lines.push(JSON.parse(line)) },
  });
  const get = (headers: Record<string, string>) =>
    fetch(`${edge.url}/_ocap/provider/jwks`, {
      headers: { "ocap-key": OCAP_ENV.OCAP_KEY, ...headers },
    });
  try {
    const revalidated = await get({ "if-none-match": '"v1"' });
    await revalidated.body?.cancel();
    assert.equal(revalidated.status, 304);
    const fresh = await get({});
    const body = await fresh.text();
    assert.equal(fresh.status, 200, `an unconditional GET got ${fresh.status} "${body}"`);
    assert.deepEqual(JSON.parse(body), { keys: ["k1"] });
    // Two keys, two origin calls; a third caller without validators shares the second's answer.
    const again = await get({});
    await again.body?.cancel();
    assert.deepEqual(lines.map((l) => [l.upstream, l.outcome, l.status]), [
      ["provider", "miss", 304],
      ["provider", "miss", 200],
      ["provider", "hit", 200],
    ]);
  } finally {
    await Promise.all([edge.close(), provider.close()]);
    kv.close();
  }
});

Deno.test("OCAP key leak: an Ocap-Key, in any spelling, reaches no regional, global, broadcast upstream or OCAP origin", async (t) => {
  // A monolith that calls the public domain instead of the mount (a wrong base URL, a redirect
  // resolved against the edge) sends its key with the request; a global upstream may be a
  // third party's (a hosted marketing site). Django's META, Rack's env and PHP's $_SERVER read
  // `ocap_key` and `ocap.key` as HTTP_OCAP_KEY too, as they do the pin header's other spellings.
  const region = startUpstream(() => new Response("app"));
  const website = startUpstream(() => new Response("about"));
  const provider = startUpstream(() => Response.json({ access_token: "t" }));
  const kv = await Deno.openKv(":memory:");
  const rules = {
    ...(ocapRules(provider.url) as Record<string, unknown>),
    regions: { us: { origin: region.url } },
    upstreams: { website: { origin: website.url } },
    rules: [
      { name: "website", type: "global", match: { path: "^/about$" }, upstream: "website" },
      { name: "login", type: "broadcast", match: { path: "^/login$" }, success: { status: [200] } },
      { name: "app", type: "regional" },
    ],
  };
  const edge = startVestibule(rules, { env: OCAP_ENV, deps: { kv } });
  const spellings = ["ocap-key", "ocap_key", "ocap.key", "Ocap_Key"];
  try {
    for (const spelling of spellings) {
      await t.step(spelling, async () => {
        for (const [path, method] of [["/about", "GET"], ["/login", "POST"], ["/app", "GET"]]) {
          const res = await fetch(`${edge.url}${path}`, {
            method,
            headers: { [spelling]: OCAP_ENV.OCAP_KEY, "x-kept": "yes" },
            body: method === "POST" ? "code=one-time-code" : undefined,
          });
          await res.body?.cancel();
          assert.equal(res.status, 200, `${method} ${path}`);
        }
        // A query of its own per spelling, so that each call reaches the provider.
        const res = await fetch(`${edge.url}/_ocap/provider/userinfo?s=${spelling}`, {
          headers: {
            "ocap-key": OCAP_ENV.OCAP_KEY,
            [spelling]: OCAP_ENV.OCAP_KEY,
            "x-kept": "yes",
          },
        });
        await res.body?.cancel();
        assert.equal(res.status, 200, "OCAP");
      });
    }
    const received = [...region.received, ...website.received, ...provider.received];
    assert.equal(received.length, 4 * spellings.length);
    for (const r of received) {
      assert.equal(r.headers.get("x-kept"), "yes", `${r.path}: other headers still go`);
      const leaked = [...r.headers].filter(([, value]) => value === OCAP_ENV.OCAP_KEY);
      assert.deepEqual(leaked, [], `${r.path}${r.query} received the Ocap-Key`);
    }
    const config = parseRules(JSON.stringify(rules), {
      env: (name) => OCAP_ENV[name as "OCAP_KEY"],
    });
    const explained = await explainRequest(
      {
        method: "GET",
        url: "https://app.example.com/app",
        headers: { "ocap-key": "k", "ocap_key": "k" },
      },
      config,
    );
    assert.deepEqual(
      explained.targets[0].forward.headers.stripped.filter((s) => s.name.startsWith("ocap")),
      ["ocap-key", "ocap_key"].map((name) => ({
        name,
        reason: "OCAP's key: only OCAP's mount reads it",
      })),
    );
  } finally {
    await Promise.all([edge.close(), region.close(), website.close(), provider.close()]);
    kv.close();
  }
});

Deno.test("OCAP metrics: a cached upstream_invalid answer handed to later callers counts one upstream error, not one per caller", async () => {
  const token = "metrics-token-0123456789";
  const provider = rawUpstream(() =>
    "HTTP/1.1 600 Weird\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
  );
  const kv = await Deno.openKv(":memory:");
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule(ocapRules(provider.url), {
    env: OCAP_ENV,
    deps: { kv, metricsToken: token, log: (line) => lines.push(JSON.parse(line)) },
  });
  try {
    const caches: (string | null)[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(tokenRequest(edge.url));
      caches.push(res.headers.get("ocap-cache"));
      assert.equal((await res.json()).error, "upstream_invalid");
    }
    assert.deepEqual(
      caches,
      ["miss", "hit", "hit"],
      "one provider call, two answers from the cache",
    );
    // The access line still names the error for every caller.
    assert.deepEqual(lines.map((l) => [l.outcome, l.error]), [
      ["miss", "upstream_invalid"],
      ["hit", "upstream_invalid"],
      ["hit", "upstream_invalid"],
    ]);
    const scrape = await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const text = await scrape.text();
    assert.match(
      text,
      new RegExp(
        `^vestibule_upstream_errors_total\\{upstream="provider",error="upstream_invalid"\\} 1$`,
        "m",
      ),
      text.split("\n").filter((l) => l.startsWith("vestibule_upstream_errors_total")).join("\n"),
    );
  } finally {
    await Promise.all([edge.close(), provider.close()]);
    kv.close();
  }
});

Deno.test("OCAP metrics: callers coalesced onto one call that got an upstream_invalid answer count one upstream error, not one per caller", async () => {
  const token = "metrics-token-0123456789";
  // A provider that holds its answer until released: the second caller waits on the first's call.
  const release = Promise.withResolvers<void>();
  const provider = rawUpstream(
    () => "HTTP/1.1 600 Weird\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    { hold: release.promise },
  );
  const kv = await Deno.openKv(":memory:");
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule(ocapRules(provider.url), {
    env: OCAP_ENV,
    deps: { kv, metricsToken: token, log: (l) => lines.push(JSON.parse(l)) },
  });
  try {
    const first = fetch(tokenRequest(edge.url));
    while (provider.connections === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const second = fetch(tokenRequest(edge.url));
    // Let the second caller reach OCAP and wait on the first's call before the provider answers.
    await new Promise((resolve) => setTimeout(resolve, 100));
    release.resolve();
    for (const res of await Promise.all([first, second])) {
      assert.equal((await res.json()).error, "upstream_invalid");
    }
    assert.equal(provider.connections, 1, "one provider call");
    assert.deepEqual(lines.map((l) => l.outcome).sort(), ["coalesced", "miss"]);
    const text = await (await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${token}` },
    })).text();
    assert.match(
      text,
      /^vestibule_upstream_errors_total\{upstream="provider",error="upstream_invalid"\} 1$/m,
    );
  } finally {
    release.resolve();
    await Promise.all([edge.close(), provider.close()]);
    kv.close();
  }
});
