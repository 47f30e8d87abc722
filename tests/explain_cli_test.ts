import assert from "node:assert/strict";
import { runCli } from "./_cli.ts";

function explain(...args: string[]) {
  return runCli("bin/explain.ts", args);
}

Deno.test("explain prints the decision for a pinned request as text", async () => {
  const { code, stdout, stderr } = await explain(
    "--",
    "GET",
    "https://app.example.com/dashboard",
    "-H",
    "Cookie: sessionid=s3cr3t-session; __Host-vestibule-region=au",
    "-H",
    "Accept-Encoding: gzip, br",
    "--placeholder-env",
  );
  assert.equal(stderr, "");
  assert.equal(
    stdout,
    [
      "GET https://app.example.com/dashboard",
      "Rules tried before: website, old-help, login, signup, join-class, staff-switch-region",
      "Rule: app (regional, rules[6])",
      "Region: au (pin cookie)",
      'Sends to: region "au" at http://au_origin.invalid',
      "  headers from the rules file: x-origin-secret",
      "Cookies forwarded: sessionid",
      "Cookies stripped: __Host-vestibule-region (pin cookie)",
      "Headers forwarded: accept-encoding",
      "Headers set by vestibule:",
      "  via: 1.1 vestibule",
      "  x-forwarded-for: 192.0.2.1",
      "  x-forwarded-host: app.example.com",
      "  x-forwarded-proto: https",
      "  x-real-ip: 192.0.2.1",
      "  x-request-id: (new UUID per request)",
      // What Deno's fetch adds when the client sent none.
      "  accept: */*",
      "  accept-language: *",
      `  user-agent: Deno/${Deno.version.deno}`,
      "Headers stripped: (none)",
      "Notes:",
      '  - Pinned to "au": every cookie but the pin cookie is sent',
      "Placeholders used for: AU_ORIGIN, AU_SECRET, US_ORIGIN, WEBSITE_ORIGIN",
      "",
    ].join("\n"),
  );
  assert.equal(code, 0);
});

Deno.test("explain --json gives the same decision for machines, without cookie values", async () => {
  const { code, stdout } = await explain(
    "POST",
    "https://app.example.com/graphql",
    "-H",
    "content-type: application/json",
    "-H",
    "cookie: csrftoken=tok-value; sessionid=sess-value",
    "--body",
    '{"operationName":"Signup"}',
    "--client-ip",
    "203.0.113.9",
    "--rules",
    "tests/fixtures/rules/env.json",
    "--env-file",
    "tests/fixtures/rules/fixture.env",
    "--placeholder-env",
    "--json",
  );
  assert.equal(code, 0);
  assert.doesNotMatch(stdout, /tok-value|sess-value/);
  const e = JSON.parse(stdout);
  assert.equal(e.rule, "app");
  assert.equal(e.region, "us");
  assert.equal(e.reason, "default");
  assert.equal(e.targets[0].origin, "http://us.from-env-file.test");
  assert.deepEqual(e.targets[0].forward.cookies.stripped, [
    { name: "csrftoken", reason: "not in forward_cookies" },
    { name: "sessionid", reason: "not in forward_cookies" },
  ]);
  assert.equal(e.targets[0].forward.headers.set["x-forwarded-for"], "203.0.113.9");
  assert.deepEqual(e.placeholders, ["VESTIBULE_FIXTURE_SECRET"]);
});

Deno.test("explain exits 1 with start-up's message when a variable is missing", async () => {
  const { code, stdout, stderr } = await explain("GET", "/");
  assert.equal(stdout, "");
  assert.equal(
    stderr,
    'Cannot read rules: environment variable "AU_ORIGIN" is not set (used at regions.au.origin)\n' +
      "(set it in the environment, give it with --env-file FILE, or check with placeholders: " +
      "--placeholder-env)\n",
  );
  assert.equal(code, 1);
});

Deno.test("explain exits 2 on a usage error", async (t) => {
  await t.step("missing URL", async () => {
    const { code, stderr } = await explain("GET");
    assert.match(stderr, /^Expected a method and a URL, got 1 argument\n/);
    assert.equal(code, 2);
  });
  const refusals: Array<[string, string, string | undefined]> = [
    // Without a colon the whole line may be a secret (`-H "$GITHUB_TOKEN"`): nothing is quoted.
    ["header without a colon", "cookie", undefined],
    ["header with an empty name", ": sessionid=s3cr3t", undefined],
    ["token leak: a bare token", "ghp_s3cr3tS3CR3Ts3cr3t", undefined],
    // The rest of the line may be a cookie or a token, and this line ends up in CI logs.
    ["cookie leak: a Cookie line without its colon", "Cookie sessionid=s3cr3t; a=b", undefined],
    [
      "cookie leak: a Cookie line whose colon comes late",
      "Cookie s=s3cr3t; next=https://a/",
      "Cookie",
    ],
    [
      "token leak: an Authorization line whose only colon is in the token",
      "Authorization Basic s3cr3t:x",
      "Authorization",
    ],
    ["cookie leak: a value a header cannot hold", "Cookie: sessionid=s3cr3t\rx", "Cookie"],
    // Deno.serve answers 400 to these before any rule; explain must not route them.
    ["header with a space before its colon", "X-Foo : bar", "X-Foo"],
    ["header with a tab before its colon", "X-Foo\t: bar", "X-Foo"],
    ["header line starting with a space", " X-Foo: bar", "X-Foo"],
    // A name-like run of characters (a pasted token before a stray colon) is quoted, but cut.
    [
      "token leak: a long name is quoted to 64 characters",
      `${"T".repeat(100)}: v\rx`,
      "T".repeat(64),
    ],
  ];
  for (const [what, line, start] of refusals) {
    await t.step(what, async () => {
      const { code, stderr } = await explain("GET", "/", "-H", line);
      const quoted = start === undefined ? "" : ` starting "${start}"`;
      assert.equal(
        stderr,
        `Invalid header${quoted}: expected "Name: value", a name without spaces and a value without CR, LF or NUL\n`,
      );
      assert.equal(code, 2);
    });
  }
});

Deno.test("explain and check-rules --help print the usage on stdout and exit 0", async (t) => {
  // Run by hand and by scripts that check the exit code; nothing is loaded or explained.
  const cases: Array<[string, string[], RegExp]> = [
    ["bin/explain.ts", ["--help"], /^Usage: deno task explain -- <METHOD> <URL> \[options\]\n/],
    ["bin/explain.ts", ["--", "-h"], /^Usage: deno task explain -- <METHOD> <URL> \[options\]\n/],
    ["bin/check_rules.ts", ["--help"], /^Usage: deno task check-rules \[FILE\] \[options\]\n/],
    // With a file that does not exist: help wins, nothing is read.
    ["bin/check_rules.ts", ["missing.json", "-h"], /^Usage: deno task check-rules /],
  ];
  for (const [script, args, usage] of cases) {
    await t.step(`${script} ${args.join(" ")}`, async () => {
      const { code, stdout, stderr } = await runCli(script, args);
      assert.match(stdout, usage);
      assert.equal(stderr, "");
      assert.equal(code, 0);
    });
  }
});

Deno.test("explain exits 2 on a stray argument instead of explaining a different request", async () => {
  // `explain GET https://a/ x` (a header without -H, a split URL) must not be dropped silently.
  const { code, stdout, stderr } = await explain(
    "--",
    "GET",
    "https://app.example.com/dashboard",
    "Cookie: sessionid=s3cr3t",
    "--placeholder-env",
  );
  assert.match(stderr, /^Expected a method and a URL, got 3 arguments\n/);
  assert.equal(stdout, "");
  assert.equal(code, 2);
});

Deno.test("explain without --rules explains by $VESTIBULE_RULES, the file start-up would load, not rules.json", async () => {
  // ./rules.json needs AU_ORIGIN and friends; the env fixture, with its env file, needs nothing.
  const { code, stdout, stderr } = await runCli("bin/explain.ts", [
    "GET",
    "https://app.example.com/",
    "--env-file",
    "tests/fixtures/rules/fixture.env",
    "--placeholder-env",
    "--json",
  ], { VESTIBULE_RULES: "tests/fixtures/rules/env.json" });
  assert.equal(stderr, "");
  assert.equal(JSON.parse(stdout).targets[0].origin, "http://us.from-env-file.test");
  assert.equal(code, 0);
});
