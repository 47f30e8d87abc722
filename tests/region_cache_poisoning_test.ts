/**
 * Attack: a shared cache in front of the edge (the CDN whose country header `geo.header` reads)
 * keys a regional answer by its URL alone, because nothing in the answer says the edge chose the
 * region by request headers. One request pinned to AU, by header or cookie, or with an AU country
 * header, then fills the cache with AU's page for every visitor, whatever region they belong to.
 */
import assert from "node:assert/strict";
import { DEAD_ORIGIN, rawRequest, startUpstream, startVestibule } from "./_servers.ts";
import { parseRules } from "../lib/load_rules.ts";
import { chosenByIn, varyByRegionChoice } from "../lib/region_vary.ts";

/**
 * A shared cache as RFC 9111 §4.1 keys it: the URL, plus the request headers the stored answer's
 * `Vary` names (compared as sent). It stores answers that say they may be stored, as a CDN does.
 */
function sharedCache(origin: string) {
  const stored = new Map<string, { vary: string[]; keyed: string; status: number; body: string }>();
  const keyedBy = (names: string[], headers: Headers) =>
    JSON.stringify(names.map((name) => headers.get(name)));
  return async (path: string, init: { headers?: Record<string, string> } = {}) => {
    const headers = new Headers(init.headers);
    const hit = stored.get(path);
    if (hit && hit.keyed === keyedBy(hit.vary, headers)) return { cache: "hit", body: hit.body };
    const response = await fetch(origin + path, { headers });
    const body = await response.text();
    if (/\bpublic\b|max-age/i.test(response.headers.get("cache-control") ?? "")) {
      const vary = (response.headers.get("vary") ?? "").toLowerCase().split(",")
        .map((name) => name.trim()).filter(Boolean);
      stored.set(path, { vary, keyed: keyedBy(vary, headers), status: response.status, body });
    }
    return { cache: "miss", body };
  };
}

/** AU and US behind an edge that assumes a region from `cf-ipcountry`, with these rules. */
function twoRegions(page: (region: string) => (req: Request) => Response, rules: unknown[]) {
  const au = startUpstream(page("au"));
  const us = startUpstream(page("us"));
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { AU: "au", US: "us" } },
    rules,
  });
  return { edge, close: () => Promise.all([edge.close(), au.close(), us.close()]) };
}

Deno.test("cache poisoning: a regional answer chosen by pin or country says so in Vary, so a shared cache keeps regions apart", async (t) => {
  // Each region's public home page: cacheable, as anonymous pages often are (Django's
  // cache_page, Rails' expires_in public: true), and the app cannot know the edge chose it.
  // `?h=name:value` asks for other caching headers than `public, max-age=300`.
  const page = (region: string) => (req: Request) => {
    const asked = new URL(req.url).searchParams.getAll("h");
    const headers = new Headers({ vary: "accept-encoding" });
    if (asked.length === 0) headers.set("cache-control", "public, max-age=300");
    for (const h of asked) headers.append(h.slice(0, h.indexOf(":")), h.slice(h.indexOf(":") + 1));
    return new Response(`home page of region ${region}`, { headers });
  };
  const { edge, close } = twoRegions(page, [{ name: "app", type: "regional" }]);
  try {
    const forms: Array<[string, Record<string, string>]> = [
      ["the pin header", { "x-vestibule-region": "au" }],
      ["the pin cookie", { cookie: "__Host-vestibule-region=au" }],
      ["an AU country header", { "cf-ipcountry": "AU" }],
    ];
    for (const [form, headers] of forms) {
      await t.step(
        `an attacker's request with ${form} does not fill a US visitor's cache entry`,
        async () => {
          const cached = sharedCache(edge.url);
          const attacker = await cached("/", { headers });
          assert.equal(attacker.body, "home page of region au");
          // A US visitor: no pin, a US country header.
          const visitor = await cached("/", { headers: { "cf-ipcountry": "US" } });
          assert.equal(
            visitor.body,
            "home page of region us",
            `served from the cache (${visitor.cache})`,
          );
        },
      );
    }
    await t.step(
      "the upstream's Vary and the edge's are one line, for caches that read one",
      async () => {
        const answer = await rawRequest(
          edge.port,
          "GET / HTTP/1.1\r\nHost: a\r\nX-Vestibule-Region: au\r\nConnection: close\r\n\r\n",
        );
        assert.deepEqual(answer.match(/^vary:.*$/gim), [
          "vary: accept-encoding, x-vestibule-region, cookie, cf-ipcountry",
        ]);
      },
    );
    await t.step("a HEAD answer names them as its GET does", async () => {
      // A cache may refresh a stored GET from a HEAD's headers (RFC 9111 §4.3.5).
      const response = await fetch(`${edge.url}/`, {
        method: "HEAD",
        headers: { "x-vestibule-region": "au" },
      });
      await response.body?.cancel();
      assert.equal(response.status, 200);
      assert.equal(
        response.headers.get("vary"),
        "accept-encoding, x-vestibule-region, cookie, cf-ipcountry",
      );
    });
    await t.step("the upstream's own Vary is kept", async () => {
      const response = await fetch(`${edge.url}/`, { headers: { "x-vestibule-region": "au" } });
      await response.body?.cancel();
      assert.match(response.headers.get("vary") ?? "", /accept-encoding/i);
    });
    await t.step(
      "an answer no shared cache stores is handed on without the edge's Vary",
      async () => {
        // Headers the answer carries → whether some shared cache may store it.
        const policies: Array<[string[], boolean]> = [
          [["cache-control:private, max-age=60"], false],
          [["cache-control:no-store"], false],
          [['cache-control:private="set-cookie", max-age=60'], true], // Stored, less Set-Cookie.
          [["cache-control:no-cache"], true], // Stored, revalidated before each use.
          // A CDN obeys its own field over Cache-Control (RFC 9213; Fastly, Akamai).
          [["cache-control:no-store", "cdn-cache-control:max-age=300"], true],
          [["cache-control:private", "surrogate-control:max-age=300"], true],
          [["cache-control:no-store", "cdn-cache-control:no-store"], false],
          [['etag:W/"1f-abc"'], true], // Express and Next.js: an ETag and no Cache-Control.
          [["last-modified:Sun, 06 Dec 2026 10:00:00 GMT"], true],
          [["expires:Sun, 06 Dec 2099 10:00:00 GMT"], true], // Fresh by Expires alone.
          // None at all: not varied, a documented limit (a copy of every answer costs requests/s).
          [["x-caching:none"], false],
        ];
        for (const [policy, varied] of policies) {
          const query = policy.map((h) => `h=${encodeURIComponent(h)}`).join("&");
          const response = await fetch(`${edge.url}/?${query}`, {
            headers: { "x-vestibule-region": "au" },
          });
          await response.body?.cancel();
          assert.equal(
            response.headers.get("vary"),
            varied
              ? "accept-encoding, x-vestibule-region, cookie, cf-ipcountry"
              : "accept-encoding",
            policy.join("; "),
          );
        }
      },
    );
  } finally {
    await close();
  }
});

Deno.test("cache poisoning: a broadcast GET's answer, the pinned or assumed region's, names the region's headers in Vary", async () => {
  // A reset link broadcast to find its owner: when no region owns it, the answer is the preferred
  // region's own page (the pin's, else the assumed one's), and it may be cacheable.
  const page = (region: string) => () =>
    new Response(`link expired (region ${region})`, {
      status: 404,
      headers: { "cache-control": "public, max-age=300" },
    });
  const { edge, close } = twoRegions(page, [{
    name: "reset-link",
    type: "broadcast",
    match: { methods: ["GET"], path: "^/reset/" },
    success: { status: [200] },
  }]);
  try {
    const response = await fetch(`${edge.url}/reset/abc`, { headers: { "cf-ipcountry": "AU" } });
    assert.equal(await response.text(), "link expired (region au)");
    assert.equal(response.headers.get("vary"), "x-vestibule-region, cookie, cf-ipcountry");
  } finally {
    await close();
  }
});

Deno.test("cache fragmentation: with one region the edge chose nothing, so a cacheable answer gets no Vary: cookie", async () => {
  // `Vary: cookie` would make a CDN keep a copy per visitor's cookies, for no region to keep apart.
  const us = startUpstream(() =>
    new Response("home page", { headers: { "cache-control": "public, max-age=300" } })
  );
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { US: "us" } },
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    const response = await fetch(`${edge.url}/`, { headers: { cookie: "session=1" } });
    assert.equal(await response.text(), "home page");
    assert.equal(response.headers.get("vary"), null);
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("cache poisoning: vestibule's own error answers say no-store, so a CDN never serves one to everyone", async (t) => {
  const edge = startVestibule({
    regions: { us: { origin: DEAD_ORIGIN } },
    default_region: "us",
    rules: [{ name: "app", type: "regional", match: { path: "^/app" } }],
  });
  try {
    for (
      const [path, status, accept] of [
        ["/app", 502, "application/json"],
        ["/app", 502, "text/html"],
        ["/nowhere", 404, "application/json"],
        ["/_vestibule/nothing", 404, "text/html"],
      ] as const
    ) {
      await t.step(`${status} for ${path} (${accept})`, async () => {
        const response = await fetch(`${edge.url}${path}`, { headers: { accept } });
        await response.body?.cancel();
        assert.equal(response.status, status);
        assert.equal(response.headers.get("cache-control"), "no-store");
      });
    }
  } finally {
    await edge.close();
  }
});

// Attack (or plain accident): a shared cache in front of the edge keys the website's answer by its
// URL alone, though the edge chose the website over the app for that URL by a request header (a
// logged-in visitor's session cookie sends `/` to the app's dashboard, everyone else gets the
// marketing home page). The website never sees that header (only `forward_cookies` reach it), so
// only the edge can name it in `Vary`; without it, one anonymous visit fills the cache with the
// marketing page for every logged-in user, and a redirect chosen by `Accept-Language` sends every
// visitor to the first one's language.
function varyNames(response: Response): string[] {
  return (response.headers.get("vary") ?? "").toLowerCase().split(",").map((n) => n.trim())
    .filter(Boolean);
}

Deno.test("cache poisoning: a global answer chosen by a request header names it in Vary", async (t) => {
  const website = startUpstream(() =>
    new Response("marketing home", { headers: { "cache-control": "public, max-age=300" } })
  );
  const app = startUpstream((req) =>
    new URL(req.url).pathname === "/pricing"
      ? new Response("app pricing", { headers: { "cache-control": "public, max-age=300" } })
      : new Response("dashboard", { headers: { "cache-control": "private" } })
  );
  const edge = startVestibule({
    regions: { us: { origin: app.url } },
    upstreams: { website: { origin: website.url } },
    default_region: "us",
    rules: [
      {
        name: "dashboard",
        type: "regional",
        match: { path: "^/$", headers: { cookie: "(^|;\\s*)sessionid=" } },
      },
      {
        name: "lang-fr",
        type: "global",
        match: { path: "^/docs$", headers: { "accept-language": "^fr" } },
        redirect: { location: "/docs/fr", status: 301 },
      },
      { name: "home", type: "global", match: { path: "^/(docs(/.*)?)?$" }, upstream: "website" },
      {
        name: "beta",
        type: "global",
        match: { path: "^/pricing$", headers: { "x-beta": "^1$" } },
        upstream: "website",
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    await t.step("the anonymous home page, chosen because no session cookie matched", async () => {
      const res = await fetch(`${edge.url}/`);
      assert.equal(await res.text(), "marketing home");
      assert.ok(varyNames(res).includes("cookie"), `Vary: ${res.headers.get("vary")}`);
    });
    await t.step("the docs page, chosen because Accept-Language did not say fr", async () => {
      const res = await fetch(`${edge.url}/docs`, { headers: { "accept-language": "en" } });
      assert.equal(await res.text(), "marketing home");
      assert.ok(varyNames(res).includes("accept-language"), `Vary: ${res.headers.get("vary")}`);
    });
    await t.step("the redirect chosen by Accept-Language", async () => {
      const res = await fetch(`${edge.url}/docs`, {
        headers: { "accept-language": "fr" },
        redirect: "manual",
      });
      await res.body?.cancel();
      assert.equal(res.status, 301);
      assert.ok(varyNames(res).includes("accept-language"), `Vary: ${res.headers.get("vary")}`);
    });
    await t.step(
      "the app's answer, chosen because an earlier rule's header did not match",
      async () => {
        const res = await fetch(`${edge.url}/pricing`);
        assert.equal(await res.text(), "app pricing");
        assert.ok(varyNames(res).includes("x-beta"), `Vary: ${res.headers.get("vary")}`);
      },
    );
    // `match.headers` on `x-beta` matches only when every CGI spelling of it (`x_beta`, `x.beta`)
    // matches too, so a copy chose the rule as well: an answer chosen because one did not match,
    // naming only `x-beta` in `Vary`, reached every visitor sending `x-beta` alone.
    for (const copy of ["x_beta", "x.beta"]) {
      await t.step(`an attacker's x-beta: 1 beside ${copy}: 0`, async () => {
        const cached = sharedCache(edge.url);
        const attacker = await cached("/pricing", { headers: { "x-beta": "1", [copy]: "0" } });
        assert.equal(attacker.body, "app pricing"); // the copy did not match: not the beta rule
        const visitor = await cached("/pricing", { headers: { "x-beta": "1" } });
        assert.equal(visitor.body, "marketing home", `served from the cache (${visitor.cache})`);
      });
    }
  } finally {
    await edge.close();
    await website.close();
    await app.close();
  }
});

Deno.test("cache poisoning: a regional answer names the headers that chose its rule beside those that chose its region", () => {
  const config = parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.internal" }, us: { origin: "http://us.internal" } },
      default_region: "us",
      geo: { header: "cf-ipcountry" },
      rules: [
        {
          name: "beta",
          type: "global",
          match: { headers: { "x-beta": "^1$" } },
          redirect: { location: "/beta" },
        },
        { name: "app", type: "regional" },
      ],
    }),
    { env: () => undefined },
  );
  const app = config.rules[1];
  const answer = new Response("page", { headers: { "cache-control": "public, max-age=60" } });
  const vary = varyByRegionChoice(answer, "GET", config, app.chosenBy, new Headers())
    .headers.get("vary");
  assert.equal(vary, "x-vestibule-region, cookie, cf-ipcountry, x-beta");
});

// The matcher reads `x-beta` as a copy of a rule's `x_beta` (cgiCopiesMatch: same length, same
// CGI name), so a request's `x-beta: 0` beside `x_beta: 1` turns the `beta` rule down and chose
// the app's page. A shared cache must key that page by `x-beta` as well, or it serves the page
// to a later `x_beta: 1` request that should have got the beta redirect.
Deno.test("cache poisoning: a dash spelling the request sent of a rule's x_beta header is named in Vary", () => {
  const config = parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.internal" }, us: { origin: "http://us.internal" } },
      default_region: "us",
      rules: [
        {
          name: "beta",
          type: "global",
          match: { headers: { "x_beta": "^1$" } },
          redirect: { location: "/beta" },
        },
        { name: "app", type: "regional" },
      ],
    }),
    { env: () => undefined },
  );
  const app = config.rules[1];
  const sent = new Headers([["x_beta", "1"], ["x-beta", "0"]]);
  assert.deepEqual([...chosenByIn(app.chosenBy, sent)].sort(), ["x-beta", "x_beta"]);
  const answer = new Response("page", { headers: { "cache-control": "public, max-age=60" } });
  const vary = varyByRegionChoice(answer, "GET", config, app.chosenBy, sent).headers.get("vary");
  assert.ok(vary?.split(/\s*,\s*/).includes("x-beta"), `Vary: ${vary}`);
});

// An extension directive whose name or value ends in `private` or `no-store` is neither: the
// answer is still stored by a shared cache, so it must still name the pin and cookie in Vary.
Deno.test("cache poisoning: a Cache-Control directive that merely ends in private or no-store does not drop Vary", () => {
  const config = parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.internal" }, us: { origin: "http://us.internal" } },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    }),
    { env: () => undefined },
  );
  for (const cc of ["public, max-age=60, x-private", "public, max-age=60, community=no-store"]) {
    const answer = new Response("page", { headers: { "cache-control": cc } });
    const vary = varyByRegionChoice(answer, "GET", config, config.rules[0].chosenBy, new Headers())
      .headers.get("vary");
    assert.equal(vary, "x-vestibule-region, cookie", cc);
  }
});
