/**
 * explain says why each cookie would not reach the upstream. A whitelisted cookie dropped because
 * its pair hides the pin cookie (after a comma, as Rack and Java's legacy parser split) must not
 * be reported as "not in forward_cookies": the operator would add it to the list in vain.
 */
import assert from "node:assert/strict";
import { explainRequest } from "../lib/explain.ts";
import { parseRules } from "../lib/load_rules.ts";

const config = parseRules(
  JSON.stringify({
    regions: { au: { origin: "http://au.test" }, us: { origin: "http://us.test" } },
    default_region: "us",
    forward_cookies: ["csrftoken"],
    rules: [{ name: "app", type: "regional" }],
  }),
  { env: () => undefined },
);

Deno.test("explain: a cookie dropped for hiding the pin is not blamed on forward_cookies", async (t) => {
  const cookie = "csrftoken=c, __Host-vestibule-region=au; sessionid=s";
  for (
    const [label, headers] of [
      ["not pinned (csrftoken is whitelisted)", { cookie }],
      ["pinned by header (every cookie may go)", { cookie, "x-vestibule-region": "us" }],
    ] as const
  ) {
    await t.step(label, async () => {
      const e = await explainRequest({ method: "GET", url: "/", headers }, config);
      const stripped = e.targets[0].forward.cookies.stripped.find((s) => s.name === "csrftoken");
      assert.ok(stripped, "csrftoken is stripped (its pair hides the pin cookie)");
      assert.notEqual(stripped.reason, "not in forward_cookies");
    });
  }
});
