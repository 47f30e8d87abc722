/**
 * Secret leak: every start-up error shows a `${NAME}` value as the reference it came from, but a
 * `match.methods` entry was quoted upper-cased, which the redaction of the value as written missed.
 */
import assert from "node:assert/strict";
import { runCli } from "./_cli.ts";

Deno.test("secret leak: a match.methods entry from ${NAME} that no request can carry is quoted as written, not by its value", async () => {
  const dir = await Deno.makeTempDir({ prefix: "secret_leak_methods_test_" });
  try {
    const file = `${dir}/rules.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        regions: { us: { origin: "http://127.0.0.1:9" } },
        default_region: "us",
        rules: [
          { name: "internal", type: "regional", match: { methods: ["${INTERNAL_METHOD}"] } },
          { name: "app", type: "regional" },
        ],
      }),
    );
    const { code, stderr } = await runCli("bin/check_rules.ts", [file], {
      INTERNAL_METHOD: "s3cr3t.verb",
    });
    assert.match(stderr, /rule "internal" \(rules\[0\]\): match\.methods: "\$\{INTERNAL_METHOD\}"/);
    assert.doesNotMatch(stderr, /s3cr3t/i, "the value, in any letter case, stays out of CI logs");
    assert.equal(code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
