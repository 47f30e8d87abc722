/**
 * Proxy loops: an upstream whose origin points back at the edge (WEBSITE_ORIGIN set to the public
 * URL, a DNS change) sent each request round again, each hop holding another connection until
 * the timeout, with nothing to tell the copies apart. vestibule sends `Via` (RFC 9110 §7.6.3) and
 * refuses a request that already carries its entry.
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../app.ts";
import { parseRules } from "../lib/load_rules.ts";
import { explainRequest } from "../lib/explain.ts";
import { cameThroughVestibule } from "../lib/forward.ts";
import { oneRegion, startUpstream, startVestibule } from "./_servers.ts";

/**
 * Servers that count the hops between them and end a loop after `cap`, should vestibule not catch
 * it: the test must not run away. `app` is read per request, so it may be built after the server.
 */
function hopCounter(cap: number) {
  let hops = 0;
  return {
    get hops() {
      return hops;
    },
    serve: (app: () => App) =>
      Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req, info) => {
        if (++hops > cap) return new Response(`stopped after ${cap} hops`);
        return app().fetch(req, info);
      }),
  };
}

Deno.test("proxy loop: a request that comes back through an upstream pointing at the edge is 508 loop_detected, not forwarded again", async () => {
  const loop = hopCounter(5);
  const server = loop.serve(() => app); // declared below, called only once it is
  const self = `http://127.0.0.1:${server.addr.port}`;
  const config = parseRules(
    JSON.stringify({
      regions: { us: { origin: "http://127.0.0.1:9" } },
      upstreams: { website: { origin: self } },
      default_region: "us",
      rules: [{ name: "site", type: "global", upstream: "website" }],
    }),
    { env: () => undefined },
  );
  const lines: string[] = [];
  const app = createApp({ config, log: (line) => lines.push(line), metricsToken: "scrape-t0ken" });
  try {
    const res = await fetch(`${self}/about`, { headers: { accept: "application/json" } });
    const body = await res.json();
    // The client's request, then its one copy, which is refused; the refusal goes back the chain.
    assert.deepEqual({ hops: loop.hops, status: res.status, error: body.error }, {
      hops: 2,
      status: 508,
      error: "loop_detected",
    });
    // Both lines say so: the copy's (refused before any rule), then the request's, whose
    // upstream answered with this vestibule's own refusal; the loop counts as that upstream's.
    assert.deepEqual(
      lines.map((l) => JSON.parse(l)).map(({ rule, status, error }) => ({ rule, status, error })),
      [
        { rule: undefined, status: 508, error: "loop_detected" },
        { rule: "site", status: 508, error: "loop_detected" },
      ],
    );
    const scrape = await (await fetch(`${self}/_vestibule/metrics`, {
      headers: { authorization: "Bearer scrape-t0ken" },
    })).text();
    assert.match(
      scrape,
      /^vestibule_upstream_errors_total\{upstream="website",error="loop_detected"\} 1$/m,
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("Via: the upstream gets vestibule's entry after any the client's proxies wrote", async (t) => {
  const up = startUpstream();
  const edge = startVestibule(oneRegion(up.url));
  try {
    await t.step("no Via from the client", async () => {
      await (await fetch(`${edge.url}/a`)).body?.cancel();
      assert.equal(up.received.at(-1)!.headers.get("via"), "1.1 vestibule");
    });
    await t.step("a CDN's Via, twice", async () => {
      const headers = new Headers([["via", "1.1 cdn-a"], ["via", "2 cdn-b (edge)"]]);
      await (await fetch(`${edge.url}/a`, { headers })).body?.cancel();
      assert.equal(
        up.received.at(-1)!.headers.get("via"),
        "1.1 cdn-a, 2 cdn-b (edge), 1.1 vestibule",
      );
    });
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("explain: a request carrying vestibule's Via is 508 loop_detected, as the router answers", async () => {
  const config = parseRules(JSON.stringify(oneRegion("http://127.0.0.1:9")), {
    env: () => undefined,
  });
  const e = await explainRequest({
    method: "GET",
    url: "http://app.example/a",
    headers: { via: "1.1 cdn, 1.1 vestibule" },
  }, config);
  assert.equal(e.refused?.status, 508);
  const passed = await explainRequest({
    method: "GET",
    url: "http://app.example/a",
    headers: { via: "1.1 cdn" },
  }, config);
  assert.equal(passed.refused, undefined);
  assert.equal(passed.targets[0].forward.headers.set.via, "1.1 cdn, 1.1 vestibule");
  // Extended, not replaced: the client's Via is listed as stripped nowhere.
  assert.deepEqual(passed.targets[0].forward.headers.stripped.filter((s) => s.name === "via"), []);
  const twice = await explainRequest({
    method: "GET",
    url: "http://app.example/a",
    headers: [["Via", "1.1 cdn-a"], ["Via", "1.1 cdn-b"]],
  }, config);
  assert.equal(twice.targets[0].forward.headers.set.via, "1.1 cdn-a, 1.1 cdn-b, 1.1 vestibule");
});

Deno.test("cameThroughVestibule() finds vestibule's entry by its received-by name only", () => {
  for (
    const via of [
      "1.1 vestibule",
      "1.1 cdn, 1.1 vestibule",
      "HTTP/1.1 vestibule (x)",
      "2  vestibule",
    ]
  ) {
    assert.equal(cameThroughVestibule(via, "vestibule"), true, via);
  }
  for (
    const via of [null, "", "1.1 cdn", "1.1 vestibule-staging", "1.1 cdn (vestibule)", "vestibule"]
  ) {
    assert.equal(cameThroughVestibule(via, "vestibule"), false, String(via));
  }
  // Another pseudonym is another vestibule; its own name is found as vestibule's is.
  assert.equal(cameThroughVestibule("1.1 vestibule", "edge-au"), false);
  assert.equal(cameThroughVestibule("1.1 cdn, 1.1 edge-au", "edge-au"), true);
  assert.equal(cameThroughVestibule("1.1 edge-au-2", "edge-au"), false);
});

Deno.test("proxy chain: two vestibules with their own via_pseudonym both forward, and the origin gets both entries", async (t) => {
  const origin = startUpstream();
  const inner = startVestibule({ ...oneRegion(origin.url), via_pseudonym: "regional-us" });
  try {
    await t.step("an outer vestibule with the default name in front of it", async () => {
      const outer = startVestibule(oneRegion(inner.url));
      try {
        const res = await fetch(`${outer.url}/a`);
        await res.body?.cancel();
        assert.equal(res.status, 200);
        assert.equal(origin.received.at(-1)!.headers.get("via"), "1.1 vestibule, 1.1 regional-us");
      } finally {
        await outer.close();
      }
    });
    await t.step("the same name on both is a loop to the inner one, as documented", async () => {
      const outer = startVestibule({ ...oneRegion(inner.url), via_pseudonym: "regional-us" });
      try {
        const before = origin.received.length;
        const res = await fetch(`${outer.url}/a`, { headers: { accept: "application/json" } });
        assert.deepEqual([res.status, (await res.json()).error], [508, "loop_detected"]);
        assert.equal(origin.received.length, before, "nothing reached the origin");
      } finally {
        await outer.close();
      }
    });
  } finally {
    await Promise.all([inner.close(), origin.close()]);
  }
});

Deno.test("proxy loop through two named vestibules: the request that comes back to the first is 508 loop_detected", async () => {
  const loop = hopCounter(6);
  const first = loop.serve(() => edge);
  const second = loop.serve(() => regional);
  const named = (pseudonym: string, origin: string) =>
    createApp({
      config: parseRules(
        JSON.stringify({ ...oneRegion(origin), via_pseudonym: pseudonym }),
        { env: () => undefined },
      ),
      log: () => {},
    });
  const edge = named("edge", `http://127.0.0.1:${second.addr.port}`);
  const regional = named("regional", `http://127.0.0.1:${first.addr.port}`);
  try {
    const res = await fetch(`http://127.0.0.1:${first.addr.port}/a`, {
      headers: { accept: "application/json" },
    });
    const body = await res.json();
    // edge, then regional, then edge again, which finds its own entry.
    assert.deepEqual({ hops: loop.hops, status: res.status, error: body.error }, {
      hops: 3,
      status: 508,
      error: "loop_detected",
    });
  } finally {
    await Promise.all([first.shutdown(), second.shutdown()]);
  }
});

Deno.test("via_pseudonym: not a token is refused at start-up, naming the field", () => {
  for (const pseudonym of ["edge au", "", "edge,au", "édge"]) {
    assert.throws(
      () =>
        parseRules(
          JSON.stringify({ ...oneRegion("http://127.0.0.1:9"), via_pseudonym: pseudonym }),
          {
            env: () => undefined,
          },
        ),
      /via_pseudonym: /,
      pseudonym,
    );
  }
});

Deno.test("explain: via_pseudonym names the entry set and the one that is a loop", async () => {
  const config = parseRules(
    JSON.stringify({ ...oneRegion("http://127.0.0.1:9"), via_pseudonym: "edge" }),
    { env: () => undefined },
  );
  const passed = await explainRequest({
    method: "GET",
    url: "http://app.example/a",
    headers: { via: "1.1 vestibule" },
  }, config);
  assert.equal(passed.refused, undefined);
  assert.equal(passed.targets[0].forward.headers.set.via, "1.1 vestibule, 1.1 edge");
  const loop = await explainRequest({
    method: "GET",
    url: "http://app.example/a",
    headers: { via: "1.1 edge" },
  }, config);
  assert.equal(loop.refused?.status, 508);
});

Deno.test("proxy loop: only a 508 carrying vestibule's Via is its own loop in the log, not an origin's 508 or an answer with its Via", async () => {
  const up = startUpstream((req) =>
    new URL(req.url).pathname === "/webdav"
      ? new Response(null, { status: 508 }) // WebDAV's own Loop Detected (RFC 5842)
      // An origin behind a proxy that copies the request's Via onto its answers.
      : new Response(null, { headers: { via: req.headers.get("via") ?? "" } })
  );
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule(oneRegion(up.url), {
    deps: { log: (line) => lines.push(JSON.parse(line)) },
  });
  try {
    for (const path of ["/ok", "/webdav"]) await (await fetch(`${edge.url}${path}`)).body?.cancel();
    assert.deepEqual(lines.map(({ status, error }) => ({ status, error })), [
      { status: 200, error: undefined },
      { status: 508, error: undefined },
    ]);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});
