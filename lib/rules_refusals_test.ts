import assert from "node:assert/strict";
import { RulesError } from "./compile_rules.ts";
import { explainRequest } from "./explain.ts";
import { parseRules } from "./load_rules.ts";
import { matchesWithoutBody } from "./success.ts";

const ENV: Record<string, string> = {
  AU_ORIGIN: "http://au.internal:8001",
  US_ORIGIN: "https://us.internal",
  TENANT_PARAM: "tenant",
  WEBSITE: "website",
};
const env = (name: string) => ENV[name];

function base(overrides: Record<string, unknown> = {}) {
  return {
    regions: { au: { origin: "${AU_ORIGIN}" }, us: { origin: "${US_ORIGIN}" } },
    upstreams: { website: { origin: "http://web.internal" } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
    ...overrides,
  };
}
const app = { name: "app", type: "regional" };

function refuses(file: unknown, ...expected: (string | RegExp)[]) {
  assert.throws(
    () => parseRules(JSON.stringify(file), { env }),
    (error: unknown) => {
      assert.ok(error instanceof RulesError, `expected RulesError, got ${error}`);
      for (const e of expected) {
        if (typeof e === "string") {
          assert.ok(error.message.includes(e), `"${error.message}" lacks "${e}"`);
        } else assert.match(error.message, e);
      }
      return true;
    },
  );
}

/** The rule the router picks for a request under `file` (which start-up accepted). */
async function ruleFor(file: unknown, method: string, url: string): Promise<string | undefined> {
  const config = parseRules(JSON.stringify(file), { env });
  return (await explainRequest({ method, url }, config)).rule;
}

Deno.test("rule confusion: a success of only an empty headers map is refused (it counted a 500 as success)", async (t) => {
  const file = base({ rules: [{ name: "login", type: "broadcast", success: { headers: {} } }] });
  await t.step("start-up accepts it, and it counts a 500 as the owner's success", () => {
    let accepted;
    try {
      accepted = parseRules(JSON.stringify(file), { env });
    } catch { /* refused: the expected outcome, asserted below */ }
    if (accepted) {
      const rule = accepted.rules[0];
      assert.equal(rule.type, "broadcast");
      const fiveHundred = new Response("boom", { status: 500 });
      assert.equal(
        matchesWithoutBody(rule.type === "broadcast" ? rule.success : {}, fiveHundred, Date.now()),
        true,
      );
    }
  });
  await t.step(
    "refused like success: {}",
    () =>
      refuses(
        file,
        'rule "login"',
        "success needs at least one of status, set_cookie, headers or json",
      ),
  );
  await t.step("pin_on: { headers: {} } pins on every answer, refused too", () =>
    refuses(
      base({
        rules: [{
          name: "switch",
          type: "regional",
          match: { path: "^/switch/(?<region>[a-z]+)$" },
          region_from: { path_group: "region" },
          pin_on: { headers: {} },
        }, app],
      }),
      'rule "switch"',
      "pin_on needs at least one of",
    ));
});

Deno.test("parseRules(): a rule shadowed by an earlier rule that takes every request of its methods or host is refused", async (t) => {
  await t.step("methods (refusal message)", () =>
    refuses(
      base({
        rules: [
          { name: "posts", type: "regional", match: { methods: ["POST"] } },
          {
            name: "login",
            type: "broadcast",
            match: { methods: ["POST"], path: "^/login$" },
            success: { status: "2xx" },
          },
          app,
        ],
      }),
      'rule "login" (rules[1])',
      /never match/,
    ));
  await t.step("host", () =>
    refuses(
      base({
        rules: [
          { name: "api", type: "regional", match: { host: "^api\\.example\\.com$" } },
          {
            name: "api-login",
            type: "broadcast",
            match: { host: "^api\\.example\\.com$", path: "^/login$" },
            success: { status: "2xx" },
          },
          app,
        ],
      }),
      'rule "api-login" (rules[1])',
      /never match/,
    ));
});

Deno.test("parseRules(): a match.methods entry the router refuses before routing is refused", async (t) => {
  for (const method of ["GET|POST", "GET, POST", "*", "TRACE"]) {
    await t.step(method, () => {
      const file = base({
        rules: [{
          name: "reads",
          type: "global",
          match: { methods: [method] },
          upstream: "website",
        }, app],
      });
      // Accepted today, and the rule is never chosen for any request the router routes.
      refuses(file, 'rule "reads" (rules[0])', "match.methods");
    });
  }
});

Deno.test("parseRules(): a match.path or match.host regex written against a form the router never sees is refused or matches", async (t) => {
  // The router matches the path without its query, with runs of `/` merged and starting with `/`,
  // and the host lower-cased without port or scheme: each rule below is accepted today and never
  // chosen, even for the very request its author had in mind.
  const cases: [string, Record<string, string>, string][] = [
    [
      "a host with upper-case letters",
      { host: "^Admin\\.example\\.com$" },
      "https://Admin.example.com/",
    ],
    ["a host with a port", { host: "^localhost:8000$" }, "http://localhost:8000/"],
    [
      "a host with a scheme",
      { host: "^https://admin\\.example\\.com$" },
      "https://admin.example.com/",
    ],
    [
      "a path anchored without its leading /",
      { path: "^api/" },
      "https://app.example.com/api/users",
    ],
    ["a path holding the query", { path: "^/search\\?q=" }, "https://app.example.com/search?q=x"],
    ["a path with a run of /", { path: "^/api//v1/" }, "https://app.example.com/api//v1/x"],
  ];
  for (const [what, match, url] of cases) {
    await t.step(what, async () => {
      const file = base({
        rules: [{ name: "special", type: "global", match, upstream: "website" }, app],
      });
      let chosen: string | undefined = "(refused at start-up)";
      try {
        chosen = await ruleFor(file, "GET", url);
      } catch (error) {
        assert.ok(error instanceof RulesError, String(error));
        assert.match(error.message, /rule "special" \(rules\[0\]\): match\.(path|host)/);
      }
      // Either start-up refuses it, naming the rule and field, or the rule gets its request.
      assert.ok(
        chosen === "(refused at start-up)" || chosen === "special",
        `accepted, and ${url} goes to rule "${chosen}"`,
      );
    });
  }
});

Deno.test("parseRules(): region_from.path_group with a match.path that does not compile reports only the regex", () => {
  assert.throws(
    () =>
      parseRules(
        JSON.stringify(base({
          rules: [{
            name: "switch",
            type: "regional",
            match: { path: "^/switch/(?<region>[a-z]+$" },
            region_from: { path_group: "region" },
          }, app],
        })),
        { env },
      ),
    (error: unknown) => {
      assert.ok(error instanceof RulesError);
      assert.match(error.message, /invalid regex in match\.path/);
      // The regex does name the group: saying it has none sends the operator the wrong way.
      assert.doesNotMatch(error.message, /has no named group "region"/);
      return true;
    },
  );
});

Deno.test("parseRules(): region_from.path_group naming text that only looks like a group is refused", async (t) => {
  for (
    const path of [
      "^/switch/\\(?<region>[a-z]+\\)$", // an escaped parenthesis, then `?<region>` as literal text
      "^/switch/[(?<region>)]+$", // inside a character class
    ]
  ) {
    await t.step(path, () => {
      // No named group exists: new RegExp(path + "|").exec("").groups is undefined.
      assert.equal(new RegExp(`${path}|`).exec("")!.groups, undefined);
      refuses(
        base({
          rules: [{
            name: "switch",
            type: "regional",
            match: { path },
            region_from: { path_group: "region" },
          }, app],
        }),
        'rule "switch"',
        'match.path has no named group "region"',
      );
    });
  }
});

Deno.test("parseRules(): a ${NAME} in a key is refused, not left as literal text", async (t) => {
  await t.step(
    "a query parameter name: it matched the literal text ${TENANT_PARAM}",
    () =>
      assert.throws(
        () =>
          parseRules(
            JSON.stringify(base({
              rules: [
                { name: "t", type: "regional", match: { query: { "${TENANT_PARAM}": "^acme$" } } },
                app,
              ],
            })),
            { env },
          ),
        /the key "\$\{TENANT_PARAM\}" at rules\[0\]\.match\.query holds a reference; references are read in values only/,
      ),
  );
  await t.step(
    "an upstream name: the message says the reference is missing from upstreams, which lists it",
    () =>
      assert.throws(
        () =>
          parseRules(
            JSON.stringify(base({
              upstreams: { "${WEBSITE}": { origin: "http://web.internal" } },
              rules: [{
                name: "w",
                type: "global",
                match: { path: "^/about" },
                upstream: "${WEBSITE}",
              }, app],
            })),
            { env },
          ),
        (error: unknown) => {
          // Not `upstream: "${WEBSITE}" is not in upstreams`, while upstreams has exactly that key.
          assert.ok(error instanceof Error);
          assert.match(error.message, /the key "\$\{WEBSITE\}" at upstreams holds a reference/);
          return true;
        },
      ),
  );
});

Deno.test("parseRules() empty secret: a ${NAME} set to the empty string is refused like a missing one", async (t) => {
  // docker compose passes an unset host variable as "", and `AU_SECRET=` in an env file is "".
  const emptyEnv = (name: string) => ({ ...ENV, INTERNAL_KEY: "", AU_SECRET: "" })[name];
  const file = base({
    regions: {
      au: { origin: "${AU_ORIGIN}", headers: { "X-Origin-Secret": "${AU_SECRET}" } },
      us: { origin: "${US_ORIGIN}" },
    },
    rules: [
      {
        name: "internal",
        type: "global",
        match: { headers: { "X-Internal-Key": "^${INTERNAL_KEY}$" } },
        upstream: "website",
      },
      app,
    ],
  });
  await t.step(
    "today it starts, and a request with an empty X-Internal-Key reaches the internal upstream",
    async () => {
      let config;
      try {
        config = parseRules(JSON.stringify(file), { env: emptyEnv });
      } catch { /* refused: the expected outcome, asserted below */ }
      if (config) {
        const explained = await explainRequest(
          {
            method: "GET",
            url: "https://app.example.com/admin",
            headers: { "X-Internal-Key": "" },
          },
          config,
        );
        assert.notEqual(
          explained.rule,
          "internal",
          "an empty key header opens the internal upstream",
        );
      }
    },
  );
  await t.step("refused, naming the variable", () =>
    assert.throws(
      () => parseRules(JSON.stringify(file), { env: emptyEnv }),
      (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.match(error.message, /INTERNAL_KEY|AU_SECRET/);
        return true;
      },
    ));
});

Deno.test("parseRules(): geo.countries with neither geo.header nor ip_lookup is refused (nothing reads it)", async () => {
  const file = base({ geo: { countries: { AU: "au", NZ: "au" } } });
  let config;
  try {
    config = parseRules(JSON.stringify(file), { env });
  } catch (error) {
    assert.ok(error instanceof RulesError);
    assert.match(error.message, /geo/);
    return;
  }
  // Accepted: an Australian visitor (by any signal vestibule has) still lands in the default.
  const explained = await explainRequest(
    {
      method: "GET",
      url: "https://app.example.com/",
      headers: { "cf-ipcountry": "AU" },
      clientIp: "1.128.0.1",
    },
    config,
  );
  assert.fail(
    `accepted; geo.countries is dead config (AU visitor → ${explained.region}, ${explained.reason})`,
  );
});
