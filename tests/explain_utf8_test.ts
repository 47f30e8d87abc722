/**
 * Hazard: explain -H and route-table cases now send a typed header value in UTF-8, as curl does
 * (15dcc7d), but still validate it as typed: `é` is sent as C3 A9, while `日本` (above U+00FF),
 * which curl sends just as well, is refused with a message that blames CR, LF or NUL.
 */
import assert from "node:assert/strict";
import { parseRules } from "../lib/load_rules.ts";
import { parseRouteCases, runRouteCases } from "../lib/route_cases.ts";
import { type CliResult, runExplain } from "./_cli.ts";

// 日 is E6 97 A5 in UTF-8; header regexes are written in octets.
const RULES = {
  regions: { us: { origin: "http://127.0.0.1:9" } },
  default_region: "us",
  rules: [
    { name: "jp", type: "regional", match: { headers: { "x-tenant": "^\\xE6\\x97\\xA5" } } },
    { name: "app", type: "regional" },
  ],
};

/** `deno task explain GET https://app.example/` with `rules` and one `-H header`. */
function explainGet(rules: unknown, header: string): Promise<CliResult> {
  return runExplain(rules, ["GET", "https://app.example/", "-H", header]);
}

Deno.test("explain -H sends a header value above U+00FF in UTF-8, as curl does, and routes it as the router would", async () => {
  const { code, stdout, stderr } = await explainGet(RULES, "X-Tenant: 日本");
  assert.equal(stderr, "");
  assert.match(stdout, /^Rule: jp \(regional, rules\[0\]\)$/m);
  assert.equal(code, 0);
});

Deno.test("route-table cases send a header value above U+00FF in UTF-8, as curl does", async () => {
  const config = parseRules(JSON.stringify(RULES), { env: () => undefined });
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: { method: "GET", url: "https://app.example/", headers: { "X-Tenant": "日本" } },
      expect: { rule: "jp", type: "regional" },
    }],
  }));
  const [result] = await runRouteCases(cases, config);
  assert.deepEqual(result.mismatches, []);
  assert.equal(result.error, undefined);
});

Deno.test("explain names a UTF-8 cookie as the operator typed it, not as its octets (prÃ©fÃ©rence)", async () => {
  const { code, stdout, stderr } = await explainGet(
    { ...RULES, forward_cookies: ["préférence"] },
    "Cookie: préférence=fr; sessionid=s",
  );
  assert.equal(stderr, "");
  assert.match(stdout, /^Cookies forwarded: préférence$/m);
  assert.equal(code, 0);
});
