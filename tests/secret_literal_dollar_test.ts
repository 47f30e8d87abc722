/**
 * Literal secret with a `$`: the shell-style `$NAME` refusal read any `$` followed by a capital
 * letter as a reference, so a key or origin header written in the file as a password manager
 * generated it (`Zq8$KTm3vRw9xYp2Lq`), which loaded before, was refused with no way to write it
 * (a `\$` is sent as written outside a regex), and the refusal printed a piece of it into CI logs.
 */
import assert from "node:assert/strict";
import { parseRules } from "../lib/load_rules.ts";

const SECRET = "Zq8$KTm3vRw9xYp2Lq";

function rules(secret: string) {
  return JSON.stringify({
    regions: { au: { origin: "http://127.0.0.1:9", headers: { "x-origin-secret": secret } } },
    default_region: "au",
    rules: [{ name: "app", type: "regional" }],
    ocap: { key: secret, targets: { provider: { origin: "http://127.0.0.1:9" } } },
  });
}

Deno.test("literal secret with a $: a key and an origin header holding $ and capitals load, and no piece of them is printed", async (t) => {
  await t.step("loads as it did before the $NAME check", () => {
    let message = "";
    try {
      parseRules(rules(SECRET), { env: () => undefined });
    } catch (error) {
      message = (error as Error).message;
    }
    assert.doesNotMatch(message, /\$KT/, "a piece of the literal secret reached the message");
    assert.equal(message, "", "a file that loaded before is refused");
  });
  await t.step("a mixed-case $ApiKey is never answered with another variable to write", () => {
    let message = "";
    try {
      parseRules(rules("$ApiKey-0123456789abcdef"), { env: () => undefined });
    } catch (error) {
      message = (error as Error).message;
    }
    assert.doesNotMatch(message, /write \$\{A\}/, message);
  });
  await t.step("$AU_SECRET, the shell typo, is still refused", () => {
    assert.throws(() => parseRules(rules("$AU_SECRET"), { env: () => "hunter2" }), {
      name: "ReferenceError",
      message: /"\$AU_SECRET" at .* \(write \$\{AU_SECRET\}\)/,
    });
  });
});
