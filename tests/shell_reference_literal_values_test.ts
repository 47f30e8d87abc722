/**
 * fc91ec8 applies the regex-field check for `$NAME` to every string under a rule's `match`,
 * `success`, `pin_on` or `prefer_failure`, the literal ones included: a JSON or form body matcher's
 * value and `success.json.equals` are compared as written, never compiled, so `-$USD` there is
 * the text the app sends, loaded before fc91ec8 (only a shell's separators counted) and refused
 * since. The other way, in fields that are regexes a `$NAME` after a digit or an escaped
 * backslash is still a dead anchor (`^/v1$API_SUFFIX`, `^\\$INTERNAL_KEY$`) and loads.
 */
import assert from "node:assert/strict";
import { parseRules } from "../lib/load_rules.ts";

function rules(rule: Record<string, unknown>) {
  return JSON.stringify({
    regions: { au: { origin: "http://127.0.0.1:9" } },
    default_region: "au",
    rules: [{ name: "r", ...rule }, { name: "app", type: "regional" }],
  });
}

Deno.test("shell reference check: literal body and success values with $NAME after punctuation still load", async (t) => {
  const cases: Array<[string, string]> = [
    [
      "a JSON body matcher's value",
      rules({ type: "regional", match: { body: { json: { price: "-$USD" } } } }),
    ],
    [
      "a form body matcher's value",
      rules({ type: "regional", match: { body: { form: { filter: "{$GT:1}" } } } }),
    ],
    [
      "success.json.equals",
      rules({
        type: "broadcast",
        match: { methods: ["POST"], path: "^/login$" },
        success: { json: { path: "currency", equals: "US-$USD" } },
      }),
    ],
  ];
  for (const [label, file] of cases) {
    await t.step(label, () => {
      assert.doesNotThrow(() => parseRules(file, { env: () => "v" }));
    });
  }
});

Deno.test("shell reference after a regex anchor: $NAME after a digit or an escaped backslash is refused", async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    [
      "after a digit in match.path",
      rules({ type: "regional", match: { path: "^/v1$API_SUFFIX" } }),
      /"\$API_SUFFIX" at rules\[0\]\.match\.path/,
    ],
    [
      "after an escaped backslash in a header regex",
      rules({ type: "regional", match: { headers: { "x-internal-key": "^\\\\$INTERNAL_KEY$" } } }),
      /"\$INTERNAL_KEY" at rules\[0\]\.match\.headers/,
    ],
  ];
  for (const [label, file, message] of cases) {
    await t.step(label, () => {
      assert.throws(() => parseRules(file, { env: () => "v" }), {
        name: "ReferenceError",
        message,
      });
    });
  }
});
