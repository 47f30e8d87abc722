/**
 * Attack: a header that frameworks read in place of the request line. Rack's MethodOverride (every
 * Rails app's default stack), Symfony's `getMethod()` (Laravel) and ASP.NET Core's middleware run
 * a POST with `X-HTTP-Method-Override: DELETE` as a DELETE; Yii 2 takes `X-Rewrite-Url`, Symfony
 * before 2018 and Zend Framework 1 `X-Original-Url`, as the request URI. The edge matches
 * `methods` and `path` on the request line, so such a header reached a route the rules kept for
 * another rule, while explain named the rule the request line matched.
 */
import assert from "node:assert/strict";
import { cgiName } from "../lib/cgi_name.ts";
import { explainRequest } from "../lib/explain.ts";
import { parseRules } from "../lib/load_rules.ts";
import { startUpstream, startVestibule, type TestServer } from "./_servers.ts";

function rules(web: string, us: string) {
  return {
    regions: { us: { origin: us } },
    upstreams: { website: { origin: web } },
    default_region: "us",
    rules: [
      // Deletions go to the website (a read-only notice during a migration), never a region.
      {
        name: "deletes",
        type: "global",
        match: { methods: ["DELETE"], path: "^/api/" },
        upstream: "website",
      },
      // The admin area is served from the website, never from a region.
      { name: "admin", type: "global", match: { path: "^/admin(/|$)" }, upstream: "website" },
      { name: "app", type: "regional" },
    ],
  };
}

/** The header names `server` received that CGI-style servers read as `names`. */
function received(server: TestServer, names: string[]): string[] {
  return server.received.flatMap((r) => [...r.headers.keys()])
    .filter((name) => names.includes(cgiName(name)));
}

Deno.test("method confusion: a POST whose X-HTTP-Method-Override another rule routes is refused; one no rule tells apart goes on", async (t) => {
  const web = startUpstream();
  const us = startUpstream();
  const config = rules(web.url, us.url);
  const edge = startVestibule(config);
  try {
    for (
      const name of [
        "X-HTTP-Method-Override",
        "x_http_method_override",
        "X-HTTP-Method",
        "X-Method-Override",
      ]
    ) {
      await t.step(`${name}: delete on a POST to /api/orders/7`, async () => {
        const response = await fetch(`${edge.url}/api/orders/7`, {
          method: "POST",
          headers: { [name]: " delete ", accept: "application/json" },
        });
        assert.equal(response.status, 400);
        const { error, message } = await response.json();
        assert.equal(error, "ambiguous_method");
        assert.match(message, /DELETE is routed by rule "deletes", not "app"/);
        assert.equal(web.received.length + us.received.length, 0, "no upstream got it");
        const explained = await explainRequest(
          { method: "POST", url: "/api/orders/7", headers: { [name]: "DELETE" } },
          parseRules(JSON.stringify(config), { env: () => undefined }),
        );
        assert.equal(explained.refused?.code, "ambiguous_method", "explain says so too");
      });
    }
    await t.step(
      "an override the rules route alike, a GET's and a junk one are forwarded as sent",
      async () => {
        const sent: Array<[string, string, string]> = [
          ["POST", "/orders/7", "PUT"], // `app` either way: a client behind a proxy that blocks PUT
          ["GET", "/api/orders/7", "DELETE"], // the frameworks honour it on a POST only
          ["POST", "/api/orders/7", "DEL ETE"], // not a method: the frameworks ignore it
        ];
        for (const [method, path, override] of sent) {
          const response = await fetch(`${edge.url}${path}`, {
            method,
            headers: { "x-http-method-override": override },
          });
          assert.equal(response.status, 200, `${method} ${path} with ${override}`);
          await response.body?.cancel();
          assert.equal(us.received.at(-1)?.headers.get("x-http-method-override"), override);
        }
      },
    );
  } finally {
    await Promise.all([edge.close(), web.close(), us.close()]);
  }
});

Deno.test("path confusion: X-Rewrite-Url and X-Original-Url, in any spelling, never reach an upstream", async () => {
  const web = startUpstream();
  const us = startUpstream();
  const config = rules(web.url, us.url);
  const edge = startVestibule({ ...config, trusted_proxy_hops: 1 });
  try {
    const claims = ["x-rewrite-url", "x-original-url"];
    for (const name of ["X-Rewrite-Url", "X-Original-Url", "x_rewrite_url", "x.original.url"]) {
      const response = await fetch(`${edge.url}/public`, { headers: { [name]: "/admin/users" } });
      assert.equal(response.status, 200);
      await response.body?.cancel();
    }
    assert.equal(us.received.length, 4);
    assert.deepEqual(received(us, claims), [], "the region got a URL to read in place of /public");
    const explained = await explainRequest(
      { method: "GET", url: "/public", headers: { "x-rewrite-url": "/admin/users" } },
      parseRules(JSON.stringify(config), { env: () => undefined }),
    );
    assert.deepEqual(
      explained.targets[0].forward.headers.stripped.map((s) => s.name),
      ["x-rewrite-url"],
    );
  } finally {
    await Promise.all([edge.close(), web.close(), us.close()]);
  }
});
