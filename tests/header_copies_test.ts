/**
 * match.headers against the copies of a header an app reads under its name: CGI, WSGI and Rack
 * servers (and PHP behind Caddy's FastCGI or FrankenPHP, for dots) file `X_Tenant` and
 * `X.Tenant` as HTTP_X_TENANT, the same variable as `X-Tenant`.
 */
import assert from "node:assert/strict";
import { rawRequest, startUpstream, startVestibule } from "./_servers.ts";

/** An edge whose rule `X-Tenant: ^acme$` sends to the acme upstream; anything else to us. */
function startTenantEdge() {
  const acme = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    upstreams: { acme: { origin: acme.url } },
    default_region: "us",
    rules: [
      {
        name: "acme",
        type: "global",
        match: { headers: { "X-Tenant": "^acme$" } },
        upstream: "acme",
      },
      { name: "app", type: "regional" },
    ],
  });
  return { acme, us, edge };
}

Deno.test("rule confusion: a CGI spelling of a matched header is a copy the app reads", async (t) => {
  const { acme, us, edge } = startTenantEdge();
  try {
    for (const spelling of ["X_Tenant", "X.Tenant"]) {
      await t.step(`X-Tenant: acme beside ${spelling}: evil`, async () => {
        acme.received.length = 0;
        us.received.length = 0;
        const answer = await rawRequest(
          edge.port,
          `GET /t HTTP/1.1\r\nHost: app.example\r\nX-Tenant: acme\r\n${spelling}: evil\r\nConnection: close\r\n\r\n`,
        );
        assert.match(answer, /^HTTP\/1\.1 200/);
        // The acme upstream must never get a request whose HTTP_X_TENANT may read "evil": either
        // the rule does not match (the copies disagree) or the odd spelling is not forwarded.
        const got = acme.received[0];
        if (got) {
          const leaked = [...got.headers].filter(([n]) =>
            n !== "x-tenant" && n.replace(/[._]/g, "-") === "x-tenant"
          );
          assert.deepEqual(leaked, [], "the acme upstream got a CGI copy of X-Tenant saying evil");
        }
      });
    }
  } finally {
    await edge.close();
    await acme.close();
    await us.close();
  }
});

Deno.test("forged secret: a client's dash spelling of a configured header named with '.' never reaches the upstream", async (t) => {
  // PHP behind Caddy's FastCGI or FrankenPHP files `X.Origin-Key` and `X-Origin-Key` both as
  // HTTP_X_ORIGIN_KEY: the client's copy would stand in for the configured secret.
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url, headers: { "X.Origin-Key": "real" } } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    for (const spelling of ["X-Origin-Key", "X_Origin-Key"]) {
      await t.step(`${spelling}: forged`, async () => {
        us.received.length = 0;
        const answer = await rawRequest(
          edge.port,
          `GET /t HTTP/1.1\r\nHost: app.example\r\n${spelling}: forged\r\nConnection: close\r\n\r\n`,
        );
        assert.match(answer, /^HTTP\/1\.1 200/);
        const sent = [...us.received[0].headers].filter(([, value]) => value.includes("forged"));
        assert.deepEqual(sent, [], "the client's spelling must not be forwarded");
        assert.equal(us.received[0].headers.get("x.origin-key"), "real");
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("wrong routing: a header matcher named in mixed case matches through the router", async () => {
  // The router's header list holds lower-case names: a rule written `X-Tenant` must still match.
  const { acme, us, edge } = startTenantEdge();
  try {
    const res = await fetch(`${edge.url}/t`, { headers: { "X-Tenant": "acme" } });
    await res.body?.cancel();
    assert.equal(acme.received.length, 1, "X-Tenant: acme goes to the acme rule");
    assert.equal(us.received.length, 0);
  } finally {
    await Promise.all([edge.close(), acme.close(), us.close()]);
  }
});
