import assert from "node:assert/strict";
import { parseRules } from "./load_rules.ts";
import {
  formatCaseResults,
  parseRouteCases,
  passed,
  routeCasesPath,
  runRouteCases,
} from "./route_cases.ts";
import { routeCasesJsonSchema } from "./route_cases_schema.ts";

const ENV: Record<string, string> = {
  AU_ORIGIN: "http://au.test",
  AU_SECRET: "s",
  US_ORIGIN: "http://us.test",
  WEBSITE_ORIGIN: "http://website.test",
};
const root = new URL("../", import.meta.url);
const config = parseRules(await Deno.readTextFile(new URL("rules.json", root)), {
  env: (name) => ENV[name],
});

Deno.test("routeCasesPath() names the .test.json file beside the rules file", () => {
  assert.equal(routeCasesPath("rules.json"), "rules.test.json");
  assert.equal(routeCasesPath("conf/prod.json"), "conf/prod.test.json");
  assert.equal(routeCasesPath("conf/prod"), "conf/prod.test.json");
});

Deno.test("runRouteCases() passes every case of the shipped rules.test.json", async () => {
  const cases = parseRouteCases(await Deno.readTextFile(new URL("rules.test.json", root)));
  const results = await runRouteCases(cases, config);
  assert.equal(formatCaseResults(results, "rules.test.json"), "rules.test.json: 19 cases passed\n");
  const covered = new Set(cases.map((c) => c.expect.rule));
  assert.deepEqual(config.rules.filter((r) => !covered.has(r.name)).map((r) => r.name), []);
});

Deno.test("runRouteCases() reports expected and actual for each wrong field", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [
      {
        name: "pinned by cookie",
        request: {
          method: "GET",
          url: "https://app.example.com/",
          headers: { cookie: "__Host-vestibule-region=au" },
        },
        expect: { rule: "app", type: "regional", region: "us", reason: "default" },
      },
      {
        request: { method: "GET", url: "/help/x" },
        expect: { rule: "help", type: "global", location: "https://help.example.com/x" },
      },
      { request: { method: "GET", url: "/pricing" }, expect: { rule: "website", type: "global" } },
    ],
  }));
  const results = await runRouteCases(cases, config);
  assert.deepEqual(results.map(passed), [false, false, true]);
  assert.equal(
    formatCaseResults(results, "wrong.test.json"),
    [
      'FAIL cases[0] "pinned by cookie"',
      "  request: GET https://app.example.com/",
      '  region: expected "us", got "au"',
      '  reason: expected "default", got "pin cookie"',
      'FAIL cases[1] "GET /help/x"',
      '  rule: expected "help", got "old-help" (no rule is named "help")',
      "wrong.test.json: 2 of 3 cases failed",
      "",
    ].join("\n"),
  );
});

Deno.test("runRouteCases() reports a field the decision lacks as (none)", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: { method: "POST", url: "/accounts/login/" },
      expect: { rule: "login", type: "broadcast", region: "au" },
    }],
  }));
  const [result] = await runRouteCases(cases, config);
  assert.deepEqual(result.mismatches, [{ field: "region", expected: "au", actual: undefined }]);
  assert.match(formatCaseResults([result], "t"), /^ {2}region: expected "au", got \(none\)$/m);
});

Deno.test("runRouteCases() fails a case whose request cannot be built", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      name: "not a URL",
      request: { method: "GET", url: "http://[::1/" },
      expect: { rule: "app", type: "regional" },
    }],
  }));
  const results = await runRouteCases(cases, config);
  assert.equal(
    results[0].error,
    'Cannot explain "http://[::1/": not a URL or a path',
  );
  assert.match(formatCaseResults(results, "t"), /^ {2}error: Cannot explain "http:/m);
});

Deno.test("runRouteCases() says why a case failed when the router answers the request itself", async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ["a lower-case method", { method: "post", url: "/accounts/login/" }, /400 bad_method/],
    ["a GET with a body", { method: "GET", url: "/x", body: "a=1" }, /400 body_not_allowed/],
    [
      "a Host that is not a host",
      { method: "GET", url: "/x", headers: { host: "app.example.com/x" } },
      /400 bad_host/,
    ],
  ];
  for (const [name, request, refusal] of cases) {
    await t.step(name, async () => {
      const parsed = parseRouteCases(JSON.stringify({
        cases: [{ request, expect: { rule: "app", type: "regional" } }],
      }));
      const report = formatCaseResults(await runRouteCases(parsed, config), "t");
      assert.match(report, /^ {2}rule: expected "app", got \(none\)$/m);
      assert.match(report, new RegExp(`^ {2}the router answers it itself: ${refusal.source}`, "m"));
    });
  }
});

Deno.test("runRouteCases() fails a case whose URL is neither absolute nor a path", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: { method: "GET", url: "app.example.com/about" },
      expect: { rule: "website", type: "global" },
    }],
  }));
  const [result] = await runRouteCases(cases, config);
  assert.equal(result.error, 'Cannot explain "app.example.com/about": not a URL or a path');
});

Deno.test("runRouteCases() fails a case whose client_ip is not an IP address", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: { method: "GET", url: "/x", client_ip: "1.2.3.4:5678" },
      expect: { rule: "app", type: "regional" },
    }],
  }));
  const [result] = await runRouteCases(cases, config);
  assert.equal(result.error, 'Cannot explain with client IP "1.2.3.4:5678": not an IP address');
});

Deno.test("parseRouteCases() names the case and the field of a schema problem", () => {
  const text = JSON.stringify({
    cases: [
      { request: { method: "GET", url: "/" }, expect: { rule: "app", type: "regional" } },
      {
        name: "typo",
        request: { method: "GET", url: "/" },
        expect: { rule: "app", type: "regionall", regon: "au" },
      },
    ],
  });
  assert.throws(() => parseRouteCases(text, 'route-table tests "x.test.json"'), {
    name: "TypeError",
    message: [
      'Invalid route-table tests "x.test.json":',
      '  - cases[1] "typo": expect.type: Invalid option: expected one of "global"|"regional"|"broadcast"',
      '  - cases[1] "typo": expect: Unrecognized key: "regon"',
    ].join("\n"),
  });
});

Deno.test("parseRouteCases() refuses text that is not JSON", () => {
  assert.throws(() => parseRouteCases("{", "t.json"), {
    name: "SyntaxError",
    message: /^Cannot parse t\.json: /,
  });
});

Deno.test("routeCasesJsonSchema() matches the committed rules.test.schema.json", async () => {
  const committed = await Deno.readTextFile(new URL("rules.test.schema.json", root));
  assert.equal(
    committed,
    routeCasesJsonSchema(),
    "run: deno run --allow-write bin/write_test_schema.ts",
  );
});

Deno.test("runRouteCases() reports an expected refusal that did not happen also when other fields differ", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: {
        method: "GET",
        url: "https://app.example.com/",
        headers: { cookie: "__Host-vestibule-region=au" },
      },
      expect: { rule: "app", type: "regional", region: "us", refused: "body_too_large" },
    }],
  }));
  const [result] = await runRouteCases(cases, config);
  assert.deepEqual(result.mismatches, [
    { field: "region", expected: "us", actual: "au" },
    { field: "refused", expected: "body_too_large", actual: undefined },
  ]);
  assert.match(
    formatCaseResults([result], "t"),
    /^ {2}refused: expected "body_too_large", got \(none\)$/m,
  );
});

Deno.test("runRouteCases() fails a redirect case whose Location is not the one the router sends", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: { method: "GET", url: "/help/billing?lang=fr" },
      expect: { rule: "old-help", type: "global", location: "https://help.example.com/wrong" },
    }],
  }));
  const results = await runRouteCases(cases, config);
  assert.deepEqual(results.map(passed), [false]);
  assert.deepEqual(results[0].mismatches, [{
    field: "location",
    expected: "https://help.example.com/wrong",
    actual: "https://help.example.com/billing?lang=fr",
  }]);
});

Deno.test("runRouteCases() checks a redirect's status: a 301 browsers keep is not the 302 a case expects", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [
      { request: { method: "GET", url: "/help/x" }, expect: { rule: "old-help", status: 301 } },
      { request: { method: "GET", url: "/help/x" }, expect: { rule: "old-help", status: 302 } },
      // A rule that sends no redirect has no status to match.
      { request: { method: "GET", url: "/dashboard/" }, expect: { rule: "app", status: 302 } },
    ].map((c) => ({ ...c, expect: { type: "global", ...c.expect } })),
  }));
  const results = await runRouteCases(cases, config);
  assert.deepEqual(results.map((r) => r.mismatches.filter((m) => m.field === "status")), [
    [],
    [{ field: "status", expected: "302", actual: "301" }],
    [{ field: "status", expected: "302", actual: undefined }],
  ]);
});

Deno.test("routeCasesPath() finds the tests beside a rules file whose extension is upper case", () => {
  // Else check-rules looks for `PROD.JSON.test.json`, finds none, and passes without a case run.
  assert.equal(routeCasesPath("conf/PROD.JSON"), "conf/PROD.test.json");
  assert.equal(routeCasesPath("rules.Json"), "rules.test.json");
});

Deno.test('runRouteCases() compares names exactly: a case expecting rule "App" or region "US" fails', async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [
      { request: { method: "GET", url: "/dashboard" }, expect: { rule: "App", type: "regional" } },
      {
        request: { method: "GET", url: "/dashboard" },
        expect: { rule: "app", type: "regional", region: "US" },
      },
    ],
  }));
  const results = await runRouteCases(cases, config);
  assert.deepEqual(results.map(passed), [false, false]);
  assert.match(
    formatCaseResults(results, "t.test.json"),
    /rule: expected "App", got "app" \(no rule is named "App"\)[\s\S]*region: expected "US", got "us"/,
  );
});

Deno.test("a case whose request the router refuses after its rule matched fails unless it expects refused", async () => {
  // A WebSocket upgrade without Sec-WebSocket-Key: the rule "app" matches, the router answers 400.
  const request = {
    method: "GET",
    url: "https://app.example.com/ws",
    headers: { connection: "Upgrade", upgrade: "websocket" },
  };
  const cases = parseRouteCases(JSON.stringify({
    cases: [
      { name: "no refused", request, expect: { rule: "app", type: "regional" } },
    ],
  }));
  const [result] = await runRouteCases(cases, config);
  assert.equal(passed(result), false, JSON.stringify(result));
  const refused = result.mismatches.find((m) => m.field === "refused");
  assert.equal(refused?.expected, "(none: routed)");
  assert.match(
    formatCaseResults([result], "t"),
    /^ {2}refused: expected "\(none: routed\)", got "/m,
  );
});

Deno.test("a case whose request vestibule serves itself says so in the report", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: { method: "GET", url: "https://app.example.com/_vestibule/health" },
      expect: { rule: "app", type: "regional" },
    }],
  }));
  const [result] = await runRouteCases(cases, config);
  assert.equal(passed(result), false);
  assert.match(
    formatCaseResults([result], "t"),
    /^ {2}the router answers it itself: vestibule's own endpoint/m,
  );
});

Deno.test("routeCasesPath() changes only the last .json, not one in a directory name", async () => {
  const { routeCasesPath } = await import("./route_cases.ts");
  assert.equal(
    routeCasesPath("deploy/site.json.d/rules.json"),
    "deploy/site.json.d/rules.test.json",
  );
  assert.equal(routeCasesPath("rules.json.bak"), "rules.json.bak.test.json");
});

Deno.test("a failing case's report masks the password in its URL (CI logs)", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: { method: "GET", url: "https://ops:hunter2secret@app.example.com/x" },
      expect: { rule: "website", type: "global" },
    }],
  }));
  const results = await runRouteCases(cases, config);
  const report = formatCaseResults(results, "t");
  assert.equal(passed(results[0]), false);
  assert.doesNotMatch(report, /hunter2secret/);
  assert.match(report, /FAIL cases\[0\] "GET https:\/\/\*\*\*@app\.example\.com\/x"/);
});

Deno.test("a case's header value is sent in UTF-8 as curl sends it: a € in it is no error", async () => {
  const cases = parseRouteCases(JSON.stringify({
    cases: [{
      request: { method: "GET", url: "https://app.example.com/", headers: { "x-note": "5 €" } },
      expect: { rule: "app", type: "regional", region: "us", reason: "default" },
    }],
  }));
  const results = await runRouteCases(cases, config);
  assert.equal(results[0].error, undefined);
  assert.deepEqual(results.map(passed), [true]);
});

Deno.test("check-rules credential leak: a case URL whose password holds a raw # or ? is printed without its password", async () => {
  for (
    const url of [
      "https://ops:hun#ter2@app.example.com/x",
      "https://ops:hun?ter2@app.example.com/x",
    ]
  ) {
    const cases = parseRouteCases(JSON.stringify({
      cases: [{ request: { method: "GET", url }, expect: { rule: "app", type: "regional" } }],
    }));
    const report = formatCaseResults(await runRouteCases(cases, config), "t");
    assert.doesNotMatch(report, /ter2/, report);
    assert.match(report, /https:\/\/\*\*\*@app\.example\.com\/x/, report);
  }
});
