/**
 * Shell typo after a regex anchor: `^$INTERNAL_KEY$` (the README's `^${INTERNAL_KEY}$` written as a
 * shell would) is a regex that never matches, since `$` then a letter matches nothing. 55824dc
 * refused it at start-up; bdc54af counts a `$NAME` only after a space, `/`, `:`, `=`, `@`, a
 * quote, `(`, `,` or `;`, so after `^` or `|` it loads, and the rule silently never matches.
 */
import assert from "node:assert/strict";
import { parseRules } from "../lib/load_rules.ts";

function rules(match: Record<string, unknown>, success?: Record<string, unknown>) {
  return JSON.stringify({
    regions: { au: { origin: "http://127.0.0.1:9" } },
    default_region: "au",
    rules: [
      success
        ? { name: "login", type: "broadcast", match: { methods: ["POST"], ...match }, success }
        : { name: "internal", type: "regional", match },
      { name: "app", type: "regional" },
    ],
  });
}

Deno.test("shell reference after a regex anchor: ^$INTERNAL_KEY$ in a regex field is refused at start-up", async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    [
      "a header regex anchored with ^",
      rules({ headers: { "x-internal-key": "^$INTERNAL_KEY$" } }),
      /"\$INTERNAL_KEY" at rules\[0\]\.match\.headers/,
    ],
    [
      "a path alternative after |",
      rules({ path: "^/(health|$HEALTH_PATH)$" }),
      /"\$HEALTH_PATH" at rules\[0\]\.match\.path/,
    ],
    [
      "a success header regex anchored with ^",
      rules({ path: "^/login$" }, { headers: { "x-owner": "^$OWNER_TOKEN$" } }),
      /"\$OWNER_TOKEN" at rules\[0\]\.success\.headers/,
    ],
  ];
  for (const [label, file, message] of cases) {
    await t.step(label, () => {
      assert.throws(() => parseRules(file, { env: () => "hunter2" }), {
        name: "ReferenceError",
        message,
      });
    });
  }
});
