/**
 * Attack: a shared cache in front of the edge (the CDN whose country header `geo.header` reads)
 * keys a regional answer by its URL alone, because nothing in the answer says the edge chose the
 * region by request headers. One request pinned to AU, by header or cookie, or with an AU country
 * header, then fills the cache with AU's page for every visitor, whatever region they belong to.
 */
import assert from "node:assert/strict";
import { rawRequest, startUpstream, startVestibule } from "./_servers.ts";

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

Deno.test("cache poisoning: a regional answer chosen by pin or country says so in Vary, so a shared cache keeps regions apart", async (t) => {
  // Each region's public home page: cacheable, as anonymous pages often are (Django's
  // cache_page, Rails' expires_in public: true), and the app cannot know the edge chose it.
  // `?cache-control=` asks for another policy.
  const page = (region: string) => (req: Request) =>
    new Response(`home page of region ${region}`, {
      headers: {
        "cache-control": new URL(req.url).searchParams.get("cache-control") ??
          "public, max-age=300",
        vary: "accept-encoding",
      },
    });
  const au = startUpstream(page("au"));
  const us = startUpstream(page("us"));
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { AU: "au", US: "us" } },
    rules: [{ name: "app", type: "regional" }],
  });
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
    await t.step("the upstream's own Vary is kept", async () => {
      const response = await fetch(`${edge.url}/`, { headers: { "x-vestibule-region": "au" } });
      await response.body?.cancel();
      assert.match(response.headers.get("vary") ?? "", /accept-encoding/i);
    });
    await t.step(
      "an answer no shared cache stores is handed on without the edge's Vary",
      async () => {
        const policies = {
          "private, max-age=60": false,
          "no-store": false,
          'private="set-cookie", max-age=60': true, // Stored, without its Set-Cookie.
          "no-cache": true, // Stored, revalidated before each use.
        };
        for (const [policy, varied] of Object.entries(policies)) {
          const response = await fetch(
            `${edge.url}/?cache-control=${encodeURIComponent(policy)}`,
            { headers: { "x-vestibule-region": "au" } },
          );
          await response.body?.cancel();
          assert.equal(
            response.headers.get("vary"),
            varied
              ? "accept-encoding, x-vestibule-region, cookie, cf-ipcountry"
              : "accept-encoding",
            policy,
          );
        }
      },
    );
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
