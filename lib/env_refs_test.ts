/**
 * @module `${NAME}` references in the rules file: what is refused (a shell-style `$NAME`, a name
 * that is no variable's), what is said of a variable set empty, and where errors point.
 */
import assert from "node:assert/strict";
import { parseRules } from "./load_rules.ts";

const ENV: Record<string, string> = {
  AU_ORIGIN: "http://au.internal:8001",
  US_ORIGIN: "https://us.internal",
};

function withAuHeader(value: string) {
  return JSON.stringify({
    regions: {
      au: { origin: "${AU_ORIGIN}", headers: { "x-origin-secret": value } },
      us: { origin: "${US_ORIGIN}" },
    },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
}

function loginRule(extra: Record<string, unknown>) {
  return JSON.stringify({
    regions: { au: { origin: "${AU_ORIGIN}" }, us: { origin: "${US_ORIGIN}" } },
    default_region: "us",
    rules: [
      { name: "login", type: "broadcast", match: { path: "^/login" }, ...extra },
      { name: "app", type: "regional" },
    ],
  });
}

Deno.test("a shell-style $NAME after each separator the docs list (@ included) is refused", async (t) => {
  for (const sep of [" ", "/", ":", "=", "@", '"', "'", "(", ",", ";"]) {
    await t.step(`after ${JSON.stringify(sep)}`, () => {
      assert.throws(
        () => parseRules(withAuHeader(`ops${sep}$AU_SECRET`), { env: (n) => ENV[n] }),
        (error: unknown) => {
          assert.ok(error instanceof ReferenceError, `expected ReferenceError, got ${error}`);
          assert.match(error.message, /\$\{AU_SECRET\}/);
          return true;
        },
      );
    });
  }
});

Deno.test('a ${NAME} set but empty is said to be empty, not unset (docker compose passes unset as "")', () => {
  assert.throws(
    () => parseRules(withAuHeader("${AU_SECRET}"), { env: (n) => ({ ...ENV, AU_SECRET: "" })[n] }),
    (error: unknown) => {
      assert.ok(error instanceof ReferenceError);
      assert.match(error.message, /"AU_SECRET" is empty/);
      return true;
    },
  );
  assert.throws(
    () => parseRules(withAuHeader("${AU_SECRET}"), { env: (n) => ENV[n] }),
    /"AU_SECRET" is not set/,
  );
});

Deno.test("a $ inside a literal (not regex) value (success.set_cookie) is accepted", () => {
  // set_cookie is compared as written: `JSESSION$ID` is a cookie name, not a dead regex anchor.
  parseRules(loginRule({ success: { status: [302], set_cookie: "JSESSION$ID" } }), {
    env: (n) => ENV[n],
  });
});

Deno.test("${1X} (a name starting with a digit) is refused as no environment reference", () => {
  assert.throws(
    () => parseRules(withAuHeader("${1X}"), { env: (n) => ({ ...ENV, "1X": "v" })[n] }),
    /"\$\{1X\}" at regions\.au\.headers\.x-origin-secret is not an environment reference/,
  );
});

Deno.test("a $ inside a regex class after an escaped ] is no reference (^[\\]$A-Z]+$ is accepted)", () => {
  const file = JSON.stringify({
    regions: { au: { origin: "${AU_ORIGIN}" }, us: { origin: "${US_ORIGIN}" } },
    upstreams: { web: { origin: "http://web.internal" } },
    default_region: "us",
    rules: [
      {
        name: "codes",
        type: "global",
        match: { headers: { "x-code": "^[\\]$A-Z]+$" } },
        upstream: "web",
      },
      { name: "app", type: "regional" },
    ],
  });
  parseRules(file, { env: (n) => ENV[n] });
});

Deno.test("an error about a list entry names it with its index in brackets", () => {
  const file = JSON.stringify({
    regions: { au: { origin: "${AU_ORIGIN}" }, us: { origin: "${US_ORIGIN}" } },
    default_region: "us",
    rules: [{ name: "w", type: "regional", match: { methods: ["POST", "$WRITE_METHOD"] } }],
  });
  assert.throws(
    () => parseRules(file, { env: (n) => ENV[n] }),
    /at rules\[0\]\.match\.methods\[1\] is not an environment reference/,
  );
});

Deno.test("a ${NAME} inside a key, not only at its start, is refused: keys are never substituted", () => {
  for (const key of ["${AU_FIELD}", "user_${AU_FIELD}"]) {
    const text = loginRule({
      match: { path: "^/graphql$", methods: ["POST"], body: { json: { [key]: "x" } } },
      success: { status: [200] },
    });
    assert.throws(
      () => parseRules(text, { env: () => "value" }),
      (error: Error) =>
        error instanceof ReferenceError && error.message.includes(`the key "${key}"`) &&
        /holds a reference/.test(error.message),
      key,
    );
  }
});

Deno.test("a shell-style $NAME anchored in a success or prefer_failure header regex is refused: ^$AU_TOKEN$ never matches", async (t) => {
  for (const section of ["success", "prefer_failure"]) {
    await t.step(section, () => {
      const fields: Record<string, unknown> = { success: { status: [302] } };
      fields[section] = { status: [302], headers: { "x-token": "^$AU_TOKEN$" } };
      assert.throws(
        () => parseRules(loginRule(fields), { env: () => "value" }),
        (error: Error) =>
          error instanceof ReferenceError &&
          error.message.includes(`"$AU_TOKEN" at rules[0].${section}.headers.x-token`),
      );
    });
  }
});
