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

/** The message a rules file with this secret is refused with; "" when it loads. */
function refusal(secret: string, env: Record<string, string> = {}): string {
  try {
    parseRules(rules(secret), { env: (name) => env[name] });
    return "";
  } catch (error) {
    return (error as Error).message;
  }
}

Deno.test("literal secret with a $: a key and an origin header holding $ and capitals load, and no piece of them is printed", async (t) => {
  await t.step("loads as it did before the $NAME check", () => {
    const message = refusal(SECRET);
    assert.doesNotMatch(message, /\$KT/, "a piece of the literal secret reached the message");
    assert.equal(message, "", "a file that loaded before is refused");
  });
  await t.step("a mixed-case $ApiKey is never answered with another variable to write", () => {
    const message = refusal("$ApiKey-0123456789abcdef");
    assert.doesNotMatch(message, /write \$\{A\}/, message);
  });
  await t.step(
    "a $ inside a token, before capitals and a digit or dash, loads and is not printed",
    () => {
      for (
        const secret of [
          "ab$XY9-0123456789abcdef",
          "k7$QW-e2f0a9b8c7d6e5",
          "x0123456789ab$AB",
          "Zq8[x]$KTM3-9abcdef",
          "Zq8-x!$KTM3.9abcdef",
        ]
      ) {
        assert.equal(refusal(secret), "", `${secret} is refused`);
      }
    },
  );
  await t.step("$AU_SECRET, the shell typo, is still refused", () => {
    assert.throws(() => parseRules(rules("$AU_SECRET"), { env: () => "hunter2" }), {
      name: "ReferenceError",
      message: /"\$AU_SECRET" at .* \(write \$\{AU_SECRET\}\)/,
    });
    // Right after a reference or a regex class, which are cut out as a space, not as nothing
    // (`id${AU_ID}$AU_TOKEN` read as the word `id$AU_TOKEN` loaded).
    assert.match(refusal("id${AU_ID}$AU_TOKEN", { AU_ID: "42" }), /"\$AU_TOKEN" at regions/);
    assert.throws(
      () =>
        parseRules(
          JSON.stringify({
            regions: { au: { origin: "http://127.0.0.1:9" } },
            default_region: "au",
            rules: [{ name: "app", type: "regional", match: { path: "^/api[/]$API_SUFFIX" } }],
          }),
          { env: () => undefined },
        ),
      /"\$API_SUFFIX" at rules\[0\]\.match\.path/,
    );
    // Where a shell or compose file would put one: after a space, `/`, `:`, `=` or `@`.
    for (const typo of ["Bearer $AU_TOKEN", "http://$AU_HOST:8080", "token=$AU_TOKEN"]) {
      assert.throws(() => parseRules(rules(typo), { env: () => "hunter2" }), {
        name: "ReferenceError",
        message: /\(write \$\{AU_(TOKEN|HOST)\}\)/,
      }, typo);
    }
  });
});
