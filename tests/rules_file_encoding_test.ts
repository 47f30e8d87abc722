/**
 * A rules file saved in another encoding than UTF-8 (Windows-1252 or Latin-1 by a Windows editor,
 * UTF-16 by Notepad's "Unicode"): read as UTF-8, each non-ASCII byte became U+FFFD, so a body
 * matcher for "Zürich" matched only "Z\uFFFDrich", never what clients send, and the route-table
 * test beside it, decoded the same way, passed.
 */
import assert from "node:assert/strict";
import { inTempDir, runCli, startMain } from "./_cli.ts";

const RULES = `{
  "regions": { "us": { "origin": "http://127.0.0.1:9" } },
  "default_region": "us",
  "rules": [
    { "name": "zurich-signup", "type": "regional",
      "match": { "methods": ["POST"], "path": "^/signup$", "body": { "json": { "city": "Zürich" } } } },
    { "name": "app", "type": "regional" }
  ]
}
`;

const CASES = `{
  "cases": [
    { "name": "a signup from Zürich",
      "request": { "method": "POST", "url": "/signup",
        "headers": { "content-type": "application/json" }, "body": { "city": "Zürich" } },
      "expect": { "rule": "zurich-signup", "type": "regional" } }
  ]
}
`;

/** `text` as a single-byte Latin-1 file: every character here is below U+0100. */
function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** `text` as Notepad's "Unicode": UTF-16LE with a byte order mark. */
function utf16le(text: string): Uint8Array {
  const bytes = new Uint8Array(2 + text.length * 2);
  bytes.set([0xff, 0xfe]);
  for (let i = 0; i < text.length; i++) {
    bytes[2 + 2 * i] = text.charCodeAt(i) & 0xff;
    bytes[3 + 2 * i] = text.charCodeAt(i) >> 8;
  }
  return bytes;
}

Deno.test("a rules file saved in Latin-1 is refused, naming the line, rather than read with U+FFFD", async (t) => {
  await inTempDir(async (dir) => {
    const rules = `${dir}/rules.json`;
    await Deno.writeFile(rules, latin1(RULES));

    await t.step("check-rules", async () => {
      const { code, stdout, stderr } = await runCli("bin/check_rules.ts", [rules]);
      assert.doesNotMatch(stdout, /OK/, "a file the router would misread is not OK");
      assert.match(stderr, new RegExp(`rules file "${rules}": .*not UTF-8.*line 6`));
      assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
      assert.equal(code, 1);
    });

    await t.step("explain", async () => {
      const { code, stderr } = await runCli("bin/explain.ts", [
        "POST",
        "/signup",
        "--rules",
        rules,
        "-H",
        "content-type: application/json",
        "--body",
        '{"city":"Zürich"}',
      ]);
      assert.match(stderr, /not UTF-8.*line 6/);
      assert.equal(code, 1);
    });

    await t.step("start-up", async () => {
      const { code, stderr } = await startMain({ VESTIBULE_RULES: rules });
      assert.equal(code, 1, "a supervisor must see a failed start");
      assert.match(stderr, /not UTF-8.*line 6/);
      assert.doesNotMatch(stderr, /^\s+at |^error: Uncaught/m, "no stack trace");
    });
  });
});

Deno.test("a route-table test file saved in Latin-1 fails check-rules instead of passing against a misread rule", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/rules.json`, RULES);
    await Deno.writeFile(`${dir}/rules.test.json`, latin1(CASES));
    const { code, stdout, stderr } = await runCli("bin/check_rules.ts", [`${dir}/rules.json`]);
    assert.doesNotMatch(stdout, /passed/);
    assert.match(stderr, new RegExp(`"${dir}/rules.test.json": .*not UTF-8.*line 3`));
    assert.equal(code, 1);
  });
});

Deno.test("a rules file saved as UTF-16 is named as such, not as an unexpected token '\uFFFD'", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/rules.json`, utf16le(RULES));
    const { code, stderr } = await runCli("bin/check_rules.ts", [`${dir}/rules.json`]);
    assert.match(stderr, /UTF-16/);
    assert.doesNotMatch(stderr, /\uFFFD/);
    assert.equal(code, 1);
  });
});

Deno.test("the same rules and tests saved in UTF-8 pass check-rules, the Zürich case included", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/rules.json`, RULES);
    await Deno.writeTextFile(`${dir}/rules.test.json`, CASES);
    const { code, stdout } = await runCli("bin/check_rules.ts", [`${dir}/rules.json`]);
    assert.equal(
      stdout,
      `${dir}/rules.json: 2 rules OK\n${dir}/rules.test.json: 1 case passed\n`,
    );
    assert.equal(code, 0);
  });
});
