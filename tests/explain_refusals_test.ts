/**
 * explain and check-rules on requests the router answers itself (400s, 413, own paths): they must
 * say what the router does, name the rule that matched, and never print a URL's password.
 */
import assert from "node:assert/strict";
import { runCli } from "./_cli.ts";
import { firstAnswer, rawRequest, routerAndRules } from "./_servers.ts";
import { parseRules } from "../lib/load_rules.ts";
import { explainRequest } from "../lib/explain.ts";
import { formatExplanation } from "../lib/explain_text.ts";
import { formatCaseResults, passed, runRouteCases } from "../lib/route_cases.ts";
import type { RouteCase } from "../lib/route_cases_schema.ts";

Deno.test("explain never prints a URL's password, also for a request the router refuses", async (t) => {
  const cases: Array<[string, string[]]> = [
    ["400 bad_method (lower-case method)", ["get", "https://ada:hunter2@app.example.com/x"]],
    ["400 bad_path (a ';' in the path)", ["GET", "https://ada:hunter2@app.example.com/a;b"]],
    [
      "400 bad_host (a Host that is no host)",
      ["GET", "https://ada:hunter2@app.example.com/x", "-H", "Host: bad!host"],
    ],
    [
      "400 body_not_allowed (a GET body)",
      ["GET", "https://ada:hunter2@app.example.com/x", "--body", "x"],
    ],
  ];
  for (const [what, args] of cases) {
    await t.step(what, async () => {
      for (const json of [[], ["--json"]]) {
        const { code, stdout, stderr } = await runCli("bin/explain.ts", [
          ...args,
          "--placeholder-env",
          ...json,
        ]);
        assert.equal(code, 0, stderr);
        assert.match(stdout, /vestibule answers 400|"status": 400/);
        // Routed requests print https://***@app.example.com/…; refused ones must too.
        assert.doesNotMatch(stdout, /hunter2/, `${json.join("") || "text"} output:\n${stdout}`);
      }
    });
  }
});

Deno.test("explain agrees with the router: /_vestibule/ with a Host that is no host is 400 bad_host", async (t) => {
  const { us, edge, logs, config } = routerAndRules();
  try {
    for (const host of ["bad!host", "app.example(com"]) {
      await t.step(`Host: ${host}`, async () => {
        logs.length = 0;
        const answer = await rawRequest(
          edge.port,
          `GET /_vestibule/health HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
        );
        const router = {
          status: Number(answer.split(" ")[1]),
          error: JSON.parse(logs.at(-1) ?? "{}").error,
        };
        const e = await explainRequest({
          method: "GET",
          url: "/_vestibule/health",
          headers: { host },
        }, config);
        assert.deepEqual(
          { status: e.refused?.status, error: e.refused?.code, servedBy: e.servedBy },
          { ...router, servedBy: undefined },
        );
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("explain agrees with the router: a WebSocket handshake the router refuses contacts no upstream", async (t) => {
  const { us, edge, logs, config } = routerAndRules();
  const upgrade: Array<[string, string]> = [["Upgrade", "websocket"], ["Connection", "Upgrade"]];
  const handshakes: Record<string, Array<[string, string]>> = {
    "no Sec-WebSocket-Key": [...upgrade, ["Sec-WebSocket-Version", "13"]],
    "version 8": [...upgrade, ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="], [
      "Sec-WebSocket-Version",
      "8",
    ]],
    "a subprotocol offered twice": [
      ...upgrade,
      ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
      ["Sec-WebSocket-Version", "13"],
      ["Sec-WebSocket-Protocol", "chat, chat"],
    ],
  };
  try {
    for (const [what, headers] of Object.entries(handshakes)) {
      await t.step(what, async () => {
        logs.length = 0;
        us.received.length = 0;
        const lines = headers.map(([n, v]) => `${n}: ${v}\r\n`).join("");
        // Connection: Upgrade keeps the socket open: only the answer's first bytes are read.
        const { answer } = await firstAnswer(
          edge.port,
          `GET /ws HTTP/1.1\r\nHost: app.example.com\r\n${lines}\r\n`,
        );
        const router = {
          status: Number(answer.split(" ")[1]),
          error: JSON.parse(logs.at(-1) ?? "{}").error,
          contacted: us.received.length > 0 ? ["us"] : [],
        };
        const e = await explainRequest({
          method: "GET",
          url: "http://app.example.com/ws",
          headers,
        }, config);
        assert.deepEqual(router, { status: 400, error: "bad_websocket", contacted: [] });
        assert.deepEqual(
          {
            status: e.refused?.status,
            error: e.refused?.code,
            contacted: e.targets.map((target) => target.id),
          },
          router,
        );
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

/** A redirect rule whose host is built from a group, and a broadcast rule, with a small limit. */
const REFUSING_RULES = {
  regions: { us: { origin: "http://127.0.0.1:9" } },
  default_region: "us",
  body_limit_bytes: 10,
  rules: [
    {
      name: "sub",
      type: "global",
      match: { path: "^/s/([^/]*)/(.*)$" },
      redirect: { location: "https://$1.example.com/$2", status: 302 },
    },
    {
      name: "login",
      type: "broadcast",
      match: { methods: ["POST"], path: "^/login$" },
      success: { status: "2xx" },
    },
    { name: "app", type: "regional" },
  ],
};

Deno.test("explain's text names the rule that matched when the router then refuses the request", async (t) => {
  const rules = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(rules, JSON.stringify(REFUSING_RULES));
    const cases: Array<[string, string[], string]> = [
      ["400 redirect_refused", ["GET", "https://app.example.com/s/a@evil.test/x"], "sub"],
      [
        "413 body_too_large",
        ["POST", "https://app.example.com/login", "--body", "x".repeat(50)],
        "login",
      ],
    ];
    for (const [what, args, rule] of cases) {
      await t.step(what, async () => {
        const json = await runCli("bin/explain.ts", [...args, "--rules", rules, "--json"]);
        assert.equal(JSON.parse(json.stdout).rule, rule); // the JSON says which rule matched
        const text = await runCli("bin/explain.ts", [...args, "--rules", rules]);
        assert.equal(text.code, 0, text.stderr);
        // The text says only "Rules tried before: …" and the refusal: the rule is not named.
        assert.match(text.stdout, new RegExp(`^Rule: ${rule} `, "m"), text.stdout);
      });
    }
  } finally {
    await Deno.remove(rules);
  }
});

Deno.test("check-rules fails a case whose request the router refuses after the rule matched", async (t) => {
  const config = parseRules(JSON.stringify(REFUSING_RULES), { env: () => undefined });
  const cases: Array<[string, RouteCase]> = [
    // The router answers 400 redirect_refused: the client is redirected nowhere.
    ["400 redirect_refused", {
      request: { method: "GET", url: "https://app.example.com/s/a@evil.test/x" },
      expect: { rule: "sub", type: "global" },
    }],
    // The router answers 413 body_too_large: no region is asked.
    ["413 body_too_large", {
      request: { method: "POST", url: "https://app.example.com/login", body: "x".repeat(50) },
      expect: { rule: "login", type: "broadcast" },
    }],
  ];
  for (const [what, c] of cases) {
    await t.step(what, async () => {
      const [result] = await runRouteCases([c], config);
      const report = formatCaseResults([result], "t.test.json");
      assert.equal(passed(result), false, report);
      assert.match(report, /the router answers it itself: 4\d\d /);
    });
  }
});

Deno.test("check-rules passes a case that expects the router's own answer by its code", async () => {
  const config = parseRules(JSON.stringify(REFUSING_RULES), { env: () => undefined });
  const [result] = await runRouteCases([{
    request: { method: "GET", url: "https://app.example.com/s/a@evil.test/x" },
    expect: { rule: "sub", type: "global", refused: "redirect_refused" },
  }], config);
  assert.equal(passed(result), true, formatCaseResults([result], "t.test.json"));
  const [routed] = await runRouteCases([{
    request: { method: "GET", url: "https://app.example.com/s/help/x" },
    expect: { rule: "sub", type: "global", refused: "redirect_refused" },
  }], config);
  assert.match(
    formatCaseResults([routed], "t.test.json"),
    /refused: expected "redirect_refused", got \(none\)/,
  );
});

Deno.test("check-rules never prints a URL's password from a test file", async () => {
  const config = parseRules(JSON.stringify(REFUSING_RULES), { env: () => undefined });
  const results = await runRouteCases([
    {
      request: { method: "GET", url: "https://ada:hunter2@app.example.com/x" },
      expect: { rule: "sub", type: "global" },
    },
  ], config);
  const report = formatCaseResults(results, "t.test.json");
  assert.match(report, /^FAIL cases\[0\]/);
  assert.doesNotMatch(report, /hunter2/, report);
});

Deno.test("explain and check-rules never print a password from a URL the parser does not read as http(s)", async (t) => {
  const config = parseRules(JSON.stringify(REFUSING_RULES), { env: () => undefined });
  const check = async (url: string) => {
    const results = await runRouteCases(
      [{ request: { method: "GET", url }, expect: { rule: "app", type: "regional" } }],
      config,
    );
    return formatCaseResults(results, "t.test.json");
  };
  for (
    const url of [
      "https://ada:hunter2@app.example.com:99999/x", // a port over 65535
      "https://ada:hunter2@app example.com/x", // a space in the host
    ]
  ) {
    await t.step(`check-rules: ${url.replace("hunter2", "***")}`, async () => {
      const report = await check(url);
      assert.match(report, /^FAIL cases\[0\]/);
      assert.doesNotMatch(report, /hunter2/, report);
    });
  }
  // As `curl ada:hunter2@app.example.com/x` takes it; the URL parser reads `ada:` as a scheme.
  await t.step(
    "a URL typed without its scheme: explain, text and JSON, and check-rules",
    async () => {
      const url = "ada:hunter2@app.example.com/x";
      const e = await explainRequest({ method: "GET", url }, config);
      assert.doesNotMatch(formatExplanation(e), /hunter2/, formatExplanation(e));
      assert.doesNotMatch(JSON.stringify(e), /hunter2/, JSON.stringify(e));
      assert.doesNotMatch(await check(url), /hunter2/);
    },
  );
});

Deno.test("explain agrees with the router on /_vestibule/ under a Host that does not fit", async (t) => {
  const { us, edge, config } = routerAndRules();
  try {
    await t.step(
      "an absolute URL whose host is no host, no Host given (the URL's is sent)",
      async () => {
        const answer = await rawRequest(
          edge.port,
          "GET /_vestibule/health HTTP/1.1\r\nHost: app.example(com\r\nConnection: close\r\n\r\n",
        );
        assert.match(answer, /^HTTP\/1\.1 400 /);
        const own = await explainRequest(
          { method: "GET", url: "http://app.example(com/_vestibule/health" },
          config,
        );
        assert.deepEqual({ servedBy: own.servedBy, error: own.refused?.code }, {
          servedBy: undefined,
          error: "bad_host",
        });
      },
    );
    await t.step("Host given twice", async () => {
      const answer = await rawRequest(
        edge.port,
        "GET /_vestibule/health HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 400 /);
      const own = await explainRequest({
        method: "GET",
        url: "/_vestibule/health",
        headers: [["host", "a.example"], ["host", "b.example"]],
      }, config);
      assert.deepEqual({ servedBy: own.servedBy, status: own.refused?.status }, {
        servedBy: undefined,
        status: 400,
      });
    });
  } finally {
    await edge.close();
    await us.close();
  }
});

Deno.test("explain: a PUT broadcast over body_limit_bytes is 413 body_too_large, as the router answers", async () => {
  // A POST's body is read for a method override already; a PUT's only by the broadcast itself.
  const config = parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.test" }, us: { origin: "http://us.test" } },
      default_region: "us",
      body_limit_bytes: 10,
      rules: [{
        name: "profile",
        type: "broadcast",
        match: { methods: ["PUT"], path: "^/api/profile$" },
        success: { status: "2xx" },
      }],
    }),
    { env: () => undefined },
  );
  const e = await explainRequest(
    { method: "PUT", url: "https://app.example.com/api/profile", body: "x".repeat(50) },
    config,
  );
  assert.equal(e.rule, "profile");
  assert.deepEqual([e.refused?.status, e.refused?.code], [413, "body_too_large"]);
  assert.deepEqual(e.targets, [], "no region is asked");
});
