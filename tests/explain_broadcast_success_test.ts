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

const BROADCAST = {
  regions: { au: { origin: "http://au.test" }, us: { origin: "http://us.test" } },
  default_region: "us",
};

Deno.test("explain: a success rule listing several statuses reads as any one of them, not all", async () => {
  const config = parseRules(
    JSON.stringify({
      ...BROADCAST,
      rules: [{
        name: "password-reset",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/accounts/password/reset/$" },
        success: { status: [302, 303] },
      }],
    }),
    { env: () => undefined },
  );
  const out = formatExplanation(
    await explainRequest(
      { method: "POST", url: "https://app.example.com/accounts/password/reset/", body: "x" },
      config,
    ),
  );
  assert.match(out, /^ {2}- Success: status 302 or 303$/m);
});

Deno.test("secret leak: explain does not print a json equals string, which may hold a ${NAME} secret", async () => {
  const config = parseRules(
    JSON.stringify({
      ...BROADCAST,
      rules: [{
        name: "signup",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/graphql$" },
        success: { status: "2xx", json: { path: "data.tenant", equals: "${TENANT_KEY}" } },
      }],
    }),
    { env: (name) => name === "TENANT_KEY" ? "tk_live_5ecret" : undefined },
  );
  const explanation = await explainRequest(
    { method: "POST", url: "https://app.example.com/graphql", body: "{}" },
    config,
  );
  const out = formatExplanation(explanation);
  assert.match(
    out,
    /^ {2}- Success: status 2xx and "data\.tenant" equal to the rules file's value in the JSON body$/m,
  );
  assert.doesNotMatch(out, /tk_live_5ecret/);
  assert.doesNotMatch(JSON.stringify(explanation), /tk_live_5ecret/, "nor in --json");
});

Deno.test("explain: a pinned broadcast does not blame a missing IP database, which only the unpinned need", async () => {
  const config = parseRules(
    JSON.stringify({
      ...BROADCAST,
      geo: { countries: { AU: "au" }, ip_lookup: true },
      rules: [{
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/accounts/login/$" },
        success: { status: [302], set_cookie: "sessionid" },
      }],
    }),
    { env: () => undefined },
  );
  const NOTE = "geo.ip_lookup is on but no IP database is loaded here: the IP was not looked up";
  const explain = (headers: Record<string, string>) =>
    explainRequest(
      { method: "POST", url: "https://app.example.com/accounts/login/", headers, body: "x" },
      config,
    );
  const pinned = await explain({ cookie: "__Host-vestibule-region=au" });
  assert.equal(pinned.pin?.region, "au");
  assert.ok(!pinned.notes.includes(NOTE), pinned.notes.join("\n"));
  // Unpinned, the assumed region breaks ties: the IP would have been looked up.
  assert.ok((await explain({})).notes.includes(NOTE));
});

Deno.test("explain: a pinned region is not shown with the geo header's country, which did not choose it", async () => {
  const config = parseRules(
    JSON.stringify({
      ...BROADCAST,
      geo: { header: "cf-ipcountry", countries: { AU: "au" } },
      rules: [{ name: "app", type: "regional" }],
    }),
    { env: () => undefined },
  );
  const explain = (headers: Record<string, string>) =>
    explainRequest({ method: "GET", url: "https://app.example.com/", headers }, config);
  const pinned = await explain({ cookie: "__Host-vestibule-region=us", "cf-ipcountry": "AU" });
  assert.deepEqual([pinned.region, pinned.reason, pinned.country], ["us", "pin cookie", undefined]);
  assert.match(formatExplanation(pinned), /^Region: us \(pin cookie\)$/m);
  const assumed = await explain({ "cf-ipcountry": "AU" });
  assert.deepEqual([assumed.region, assumed.reason, assumed.country], ["au", "geo header", "AU"]);
});
