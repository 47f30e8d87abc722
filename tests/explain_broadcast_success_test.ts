/**
 * Hazard: `deno task explain` is what an operator runs to learn why a login got 502
 * broadcast_ambiguous, or another region's "no such user". For a broadcast it said a region wins
 * when its answer "matches success", without saying what success is, which failure is preferred,
 * how long each region is waited for, or what the client gets when none answers: the rules file
 * had to be read beside it, and the per-region timeouts worked out by hand.
 */
import assert from "node:assert/strict";
import { explainRequest } from "../lib/explain.ts";
import { formatExplanation } from "../lib/explain_text.ts";
import { parseRules } from "../lib/load_rules.ts";

Deno.test("explain: a broadcast names its success rule, its preferred failure, its timeouts and its all-down answer", async (t) => {
  const config = parseRules(
    JSON.stringify({
      regions: {
        au: { origin: "http://au.test", timeout_ms: 2000 },
        us: { origin: "http://us.test" },
      },
      default_region: "us",
      rules: [{
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/accounts/login/$" },
        success: { status: [302], set_cookie: "sessionid" },
        prefer_failure: { status: [401] },
      }, {
        name: "join-class",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/graphql$" },
        success: { status: "2xx", json: { path: "errors", exists: false } },
        timeout_ms: 5000,
      }],
    }),
    { env: () => undefined },
  );
  const explain = async (path: string) =>
    formatExplanation(
      await explainRequest(
        { method: "POST", url: `https://app.example.com${path}`, headers: {}, body: "x" },
        config,
      ),
    );
  await t.step("status and cookie, prefer_failure, each region's own timeout", async () => {
    const out = await explain("/accounts/login/");
    assert.match(out, /^ {2}- Success: status 302 and a live "sessionid" cookie$/m);
    assert.match(out, /^ {2}- Preferred failure \(prefer_failure\): status 401$/m);
    assert.match(
      out,
      /^ {2}- Waits for each region's answer up to its timeout_ms: au 2000 ms, us 30000 ms$/m,
    );
    assert.match(
      out,
      /^ {2}- If no region answers: 502 broadcast_unavailable \(504 upstream_timeout when all timed out\)$/m,
    );
  });
  await t.step("a JSON check and the rule's own timeout", async () => {
    const out = await explain("/graphql");
    assert.match(out, /^ {2}- Success: status 2xx and no "errors" in the JSON body$/m);
    assert.match(
      out,
      /^ {2}- Waits for each region's answer up to the rule's timeout_ms: 5000 ms$/m,
    );
  });
});
