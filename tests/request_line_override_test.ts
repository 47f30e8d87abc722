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
    body_limit_bytes: 64,
    rules: [
      // Deletions go to the website (a read-only notice during a migration), never a region.
      {
        name: "deletes",
        type: "global",
        match: { methods: ["DELETE"], path: "^/api/" },
        upstream: "website",
      },
      // Role changes are PUTs the website handles; a POST never reaches this rule.
      {
        name: "role-changes",
        type: "global",
        match: { methods: ["PUT"], path: "^/api/users/", body: { json: { role: "admin" } } },
        upstream: "website",
      },
      // The admin area is served from the website, never from a region.
      { name: "admin", type: "global", match: { path: "^/admin(/|$)" }, upstream: "website" },
      {
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/login$" },
        success: { status: [302] },
      },
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
      "_method in the query (Symfony, Laravel) and in a form body read anyway",
      async () => {
        const sent: Array<[string, string, RegExp]> = [
          [
            "/api/orders/7?_method=delete",
            "",
            /_method=DELETE is routed by rule "deletes", not "app"/,
          ],
          // Rails' `button_to … method: :put`, to a broadcast rule, which replays the body anyway.
          [
            "/login",
            "_method=put&username=olivia",
            /_method=PUT is routed by rule "app", not "login"/,
          ],
        ];
        for (const [target, body, message] of sent) {
          const response = await fetch(`${edge.url}${target}`, {
            method: "POST",
            headers: {
              accept: "application/json",
              "content-type": "application/x-www-form-urlencoded",
            },
            body,
          });
          assert.equal(response.status, 400, target);
          assert.match((await response.json()).message, message);
        }
        assert.equal(web.received.length + us.received.length, 0, "no upstream got them");
      },
    );
    await t.step(
      "a streamed body is not read for its _method (README: uploads keep streaming)",
      async () => {
        const body = "_method=delete&id=7";
        const response = await fetch(`${edge.url}/api/orders/7`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body,
        });
        assert.equal(response.status, 200);
        await response.body?.cancel();
        assert.equal(new TextDecoder().decode(us.received.at(-1)?.body), body);
        us.received.length = 0;
      },
    );
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

Deno.test("method confusion: explain says 413 body_too_large, as the router does, when the override's rule reads too big a body", async () => {
  const web = startUpstream();
  const us = startUpstream();
  const config = rules(web.url, us.url);
  const edge = startVestibule(config);
  const request = {
    method: "POST",
    url: "/api/users/7",
    headers: { "x-http-method-override": "PUT", "content-type": "application/json" },
    body: JSON.stringify({ role: "admin", bio: "x".repeat(200) }),
  };
  try {
    const response = await fetch(`${edge.url}${request.url}`, {
      ...request,
      headers: { ...request.headers, accept: "application/json" },
    });
    const { error } = await response.json();
    assert.deepEqual([response.status, error], [413, "body_too_large"], "the router's answer");
    const explained = await explainRequest(
      request,
      parseRules(JSON.stringify(config), { env: () => undefined }),
    );
    assert.deepEqual([explained.refused?.status, explained.refused?.code], [413, "body_too_large"]);
  } finally {
    await Promise.all([edge.close(), web.close(), us.close()]);
  }
});
