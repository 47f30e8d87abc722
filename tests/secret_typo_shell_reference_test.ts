/**
 * Secret typo: `"x-origin-secret": "$AU_SECRET"`, written as a shell or docker compose file
 * writes a reference, was accepted and sent to the origin as the literal text `$AU_SECRET`,
 * while `${AU-SECRET}` is refused for exactly that reason.
 */
import assert from "node:assert/strict";
import { inTempDir, runCli, startMain } from "./_cli.ts";

function rules(headers: Record<string, string>, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    regions: { au: { origin: "http://127.0.0.1:9", headers } },
    default_region: "au",
    rules: [{ name: "app", type: "regional" }],
    ...extra,
  });
}

Deno.test("secret typo: a shell-style $NAME is refused with the ${NAME} to write, not sent as the secret", async (t) => {
  await inTempDir(async (dir) => {
    const file = `${dir}/rules.json`;
    await Deno.writeTextFile(file, rules({ "x-origin-secret": "$AU_SECRET" }));

    await t.step("check-rules", async () => {
      const { code, stdout, stderr } = await runCli("bin/check_rules.ts", [file], {
        AU_SECRET: "hunter2-origin-secret",
      });
      assert.equal(stdout, "");
      assert.match(stderr, /regions\.au\.headers\.x-origin-secret/, "names the field");
      assert.match(stderr, /\$\{AU_SECRET\}/, "says what to write");
      assert.doesNotMatch(stderr, /hunter2/, "never prints the variable's value");
      assert.equal(code, 1);
    });

    await t.step("start-up", async () => {
      const { code, stderr: text } = await startMain({
        VESTIBULE_RULES: file,
        AU_SECRET: "hunter2-origin-secret",
      });
      assert.equal(code, 1, `a supervisor must see a failed start: ${text}`);
      assert.match(text, /\$\{AU_SECRET\}/);
      assert.doesNotMatch(text, /hunter2|^\s+at /m);
    });
  });
});

Deno.test("secret typo: a $ that is no reference (a regex anchor, an escaped $, one in a class, a $1 group) is still accepted", async () => {
  await inTempDir(async (dir) => {
    const file = `${dir}/rules.json`;
    await Deno.writeTextFile(
      file,
      rules({ "x-origin-secret": "${AU_SECRET}" }, {
        rules: [
          {
            name: "help",
            type: "global",
            match: {
              path: "^/help/(.*)$",
              headers: { "x-price": "^\\$USD [0-9]+$", "x-code": "^[$A-Z_\\]]+$" },
            },
            redirect: { location: "https://help.example.com/$1" },
          },
          { name: "app", type: "regional" },
        ],
      }),
    );
    const { code, stdout } = await runCli("bin/check_rules.ts", [file], { AU_SECRET: "s" });
    assert.match(stdout, /: 2 rules OK\n/);
    assert.equal(code, 0);
  });
});
