import assert from "node:assert/strict";
import { runCli, runTask } from "./_cli.ts";
import { parseRules } from "../lib/load_rules.ts";

const FIXTURES = "tests/fixtures/rules";

function checkRules(...args: string[]) {
  return runCli("bin/check_rules.ts", args);
}

Deno.test("check-rules validates the shipped rules.json and passes its rules.test.json", async () => {
  const { code, stdout, stderr } = await checkRules("--", "--placeholder-env");
  assert.equal(stderr, "");
  assert.equal(
    stdout,
    "rules.json: 7 rules OK (placeholders for AU_ORIGIN, AU_SECRET, US_ORIGIN, WEBSITE_ORIGIN)\n" +
      "rules.test.json: 19 cases passed\n",
  );
  assert.equal(code, 0);
});

Deno.test("check-rules passes a rules file whose cases all hold", async () => {
  const { code, stdout } = await checkRules(`${FIXTURES}/small.json`);
  assert.equal(
    stdout,
    `${FIXTURES}/small.json: 2 rules OK\n${FIXTURES}/small.test.json: 2 cases passed\n`,
  );
  assert.equal(code, 0);
});

Deno.test("check-rules fails a wrong expectation with expected and actual per field", async () => {
  const { code, stdout } = await checkRules(`${FIXTURES}/wrong_expectation.json`);
  assert.equal(
    stdout,
    [
      `${FIXTURES}/wrong_expectation.json: 2 rules OK`,
      'FAIL cases[1] "australian visitor"',
      "  request: GET /",
      '  region: expected "us", got "au"',
      '  reason: expected "default", got "geo header"',
      `${FIXTURES}/wrong_expectation.test.json: 1 of 2 cases failed`,
      "",
    ].join("\n"),
  );
  assert.equal(code, 1);
});

Deno.test("check-rules exits 1 naming the rule and the field of an invalid rules file", async (t) => {
  await t.step("schema problem", async () => {
    const { code, stdout, stderr } = await checkRules(`${FIXTURES}/invalid_rule.json`);
    assert.equal(stdout, "");
    assert.equal(
      stderr,
      'Cannot compile rule "login" (rules[1]): match: Unrecognized key: "pathh"\n',
    );
    assert.equal(code, 1);
  });
  await t.step("compile problem", async () => {
    const { code, stderr } = await checkRules(`${FIXTURES}/bad_regex.json`);
    assert.equal(
      stderr,
      'Cannot compile rule "login" (rules[0]): invalid regex in match.path: /^/login($/: Unterminated group\n',
    );
    assert.equal(code, 1);
  });
});

Deno.test("check-rules exits 1 naming the case and the field of an invalid test file", async () => {
  const { code, stderr } = await checkRules(`${FIXTURES}/bad_cases.json`);
  assert.equal(
    stderr,
    `Invalid route-table tests "${FIXTURES}/bad_cases.test.json":\n` +
      '  - cases[0] "typo": expect: Unrecognized key: "regoin"\n',
  );
  assert.equal(code, 1);
});

Deno.test("check-rules says so when there is no test file beside the rules", async () => {
  const { code, stdout } = await checkRules(`${FIXTURES}/no_tests.json`);
  assert.equal(
    stdout,
    `${FIXTURES}/no_tests.json: 2 rules OK\n` +
      `${FIXTURES}/no_tests.test.json: not found, no route-table tests run\n`,
  );
  assert.equal(code, 0);
});

Deno.test("check-rules resolves ${NAME} like start-up, from --env-file or placeholders", async (t) => {
  const rules = `${FIXTURES}/env.json`;
  const envFile = `${FIXTURES}/fixture.env`;
  await t.step("a missing variable fails as at start-up", async () => {
    const { code, stderr } = await checkRules(rules);
    assert.equal(
      stderr,
      'Cannot read rules: environment variable "VESTIBULE_FIXTURE_AU" is not set (used at regions.au.origin)\n' +
        "(set it in the environment, give it with --env-file FILE, or check with placeholders: " +
        "--placeholder-env)\n",
    );
    assert.equal(code, 1);
  });
  await t.step("the env file fills some, a placeholder the rest", async () => {
    const { code, stdout } = await checkRules(rules, "--env-file", envFile, "--placeholder-env");
    assert.equal(
      stdout,
      `${rules}: 1 rule OK (placeholders for VESTIBULE_FIXTURE_SECRET)\n` +
        `${FIXTURES}/env.test.json: 1 case passed\n`,
    );
    assert.equal(code, 0);
  });
  await t.step(
    "an env file given as a pipe (--env-file <(sops -d …)) is read once, whole",
    async () => {
      // bash's process substitution: a pipe only one reader can empty.
      const deno = Deno.execPath();
      const { code, stdout } = await new Deno.Command("bash", {
        args: [
          "-c",
          `"${deno}" run -A bin/check_rules.ts ${rules} --env-file <(cat ${envFile}) --placeholder-env`,
        ],
        cwd: new URL("../", import.meta.url),
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).output();
      assert.match(
        new TextDecoder().decode(stdout),
        /: 1 rule OK \(placeholders for VESTIBULE_FIXTURE_SECRET\)\n/,
      );
      assert.equal(code, 0);
    },
  );
  await t.step("an env file that is a directory is refused, not read as empty", async () => {
    const { code, stdout, stderr } = await checkRules(
      rules,
      "--env-file",
      FIXTURES,
      "--placeholder-env",
    );
    assert.deepEqual({ code, stdout }, { code: 1, stdout: "" });
    assert.match(stderr, /^Cannot read env file "tests\/fixtures\/rules": it is a directory/);
  });
  await t.step("deno task check-rules has the permissions reading the env file takes", async () => {
    const { code, stdout, stderr } = await runTask("check-rules", [
      rules,
      "--env-file",
      envFile,
      "--placeholder-env",
    ]);
    assert.equal(stderr, "");
    assert.match(stdout, /: 1 rule OK /);
    assert.equal(code, 0);
  });
});

Deno.test("check-rules exits 2 on a usage error", async () => {
  const { code, stderr } = await checkRules("--bogus");
  assert.match(stderr, /^Unknown option '--bogus'/);
  assert.equal(code, 2);
});

Deno.test("--placeholder-env: check-rules and explain accept what start-up accepts (in CI it needs no secrets)", async (t) => {
  // A host and a path prefix from the environment, as deployments write them: the placeholder
  // (http://NAME.invalid) in a regex is no real value, so no check reads its text.
  const rules = {
    regions: { au: { origin: "${AU_ORIGIN}" }, us: { origin: "${US_ORIGIN}" } },
    upstreams: { admin: { origin: "${ADMIN_ORIGIN}" } },
    default_region: "us",
    rules: [
      { name: "admin", type: "global", match: { host: "^${ADMIN_HOST}$" }, upstream: "admin" },
      {
        name: "tenant",
        type: "regional",
        match: { path: "^/${TENANT}/(?<region>[a-z]+)/" },
        region_from: { path_group: "region" },
      },
      {
        name: "tenant-api",
        type: "global",
        match: { path: "^/${TENANT}/api/" },
        upstream: "admin",
      },
      { name: "app", type: "regional" },
    ],
  };
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/rules.json`;
    await Deno.writeTextFile(path, JSON.stringify(rules));
    await t.step("start-up accepts it with the production environment", () => {
      const production: Record<string, string> = {
        AU_ORIGIN: "http://au.internal",
        US_ORIGIN: "http://us.internal",
        ADMIN_ORIGIN: "http://admin.internal",
        ADMIN_HOST: "admin\\.example\\.com",
        TENANT: "acme",
      };
      const config = parseRules(JSON.stringify(rules), { env: (n) => production[n] });
      assert.equal(config.rules.length, 4);
    });
    await t.step("check-rules --placeholder-env accepts it too", async () => {
      const { code, stdout, stderr } = await checkRules(path, "--placeholder-env");
      assert.equal(stderr, "");
      assert.match(stdout, /: 4 rules OK \(placeholders for /);
      assert.equal(code, 0);
    });
    await t.step("explain --placeholder-env explains a request under it", async () => {
      const { code, stderr } = await runCli("bin/explain.ts", [
        "GET",
        "https://app.example.com/",
        "--rules",
        path,
        "--placeholder-env",
      ]);
      assert.equal(stderr, "");
      assert.equal(code, 0);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const OCAP_TARGET = { g: { origin: "https://oauth2.googleapis.com" } };

Deno.test("--placeholder-env: a placeholder suits the field, so check-rules refuses no file start-up accepts", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const regions = { us: { origin: "${US_ORIGIN}" } };
    const app = { name: "app", type: "regional" };
    // Each a `${NAME}` where a deploy sets a name, not an origin: http://NAME.invalid failed the
    // cookie-name pattern, the header-name check and the method check.
    const files: [string, Record<string, unknown>, Record<string, string>][] = [
      ["pin.cookie", { pin: { cookie: "${PIN_COOKIE}" } }, { PIN_COOKIE: "vregion" }],
      [
        "geo.header",
        { geo: { header: "${GEO_HEADER}", countries: { US: "us" } } },
        { GEO_HEADER: "cf-ipcountry" },
      ],
      [
        "match.methods",
        { rules: [{ name: "w", type: "regional", match: { methods: ["${WRITE}"] } }, app] },
        { WRITE: "POST" },
      ],
      // An OCAP key of 16 or more characters (PLACEHOLDER_KEY was 15), a path starting with /.
      ["ocap.key", { ocap: { key: "${KEY}", targets: OCAP_TARGET } }, { KEY: "0123456789abcdef" }],
      [
        "ocap.path",
        { ocap: { path: "${OCAP_PATH}", key: "0123456789abcdef", targets: OCAP_TARGET } },
        { OCAP_PATH: "/_ocap" },
      ],
    ];
    for (const [what, extra, values] of files) {
      await t.step(what, async () => {
        const file = { regions, default_region: "us", rules: [app], ...extra };
        const env: Record<string, string> = { US_ORIGIN: "http://us.internal", ...values };
        parseRules(JSON.stringify(file), { env: (name) => env[name] });
        const path = `${dir}/${what}.json`;
        await Deno.writeTextFile(path, JSON.stringify(file));
        const { code, stdout, stderr } = await checkRules(path, "--placeholder-env");
        assert.equal(stderr, "", stdout);
        assert.equal(code, 0);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-rules fails when the route-table tests exist but cannot be read, instead of skipping them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(`${FIXTURES}/small.json`, `${dir}/small.json`);
    // Present but unreadable as a file (a directory here; an unreadable mount behaves alike).
    await Deno.mkdir(`${dir}/small.test.json`);
    const { code, stdout } = await checkRules(`${dir}/small.json`);
    assert.doesNotMatch(stdout, /not found, no route-table tests run/);
    assert.equal(code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-rules exits 2 given two rules files instead of checking only the first", async () => {
  const { code, stdout, stderr } = await checkRules(
    `${FIXTURES}/small.json`,
    `${FIXTURES}/small.json`,
  );
  assert.match(stderr, /^Expected at most one rules file, got 2\n/);
  assert.equal(stdout, "");
  assert.equal(code, 2);
});

Deno.test("check-rules without FILE checks $VESTIBULE_RULES, the file start-up would load, not rules.json", async () => {
  const { code, stdout } = await runCli("bin/check_rules.ts", [], {
    VESTIBULE_RULES: `${FIXTURES}/small.json`,
  });
  assert.equal(
    stdout,
    `${FIXTURES}/small.json: 2 rules OK\n${FIXTURES}/small.test.json: 2 cases passed\n`,
  );
  assert.equal(code, 0);
});
