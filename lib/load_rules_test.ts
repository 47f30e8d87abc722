import assert from "node:assert/strict";
import { RulesError } from "./compile_rules.ts";
import { explainRequest } from "./explain.ts";
import { parseRules } from "./load_rules.ts";

const ENV: Record<string, string> = {
  AU_ORIGIN: "http://au.internal:8001",
  US_ORIGIN: "https://us.internal",
  TENANT_PARAM: "tenant",
  WEBSITE: "website",
  SECRET: "s3cr3t",
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

/** A global rule for `^/help/` named "help", with the other fields given. */
function helpRedirect(fields: Record<string, unknown>) {
  return { name: "help", type: "global", match: { path: "^/help/" }, ...fields };
}

/** The config `file` compiles to; throws as start-up would. */
const accepts = (file: unknown) => parseRules(JSON.stringify(file), { env });

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

Deno.test("parseRules() accepts a minimal file and fills in documented defaults", () => {
  const config = parseRules(JSON.stringify(base()), { env });
  assert.deepEqual(config.regionIds, ["au", "us"]);
  assert.equal(config.regions.get("au")!.origin, "http://au.internal:8001");
  assert.equal(config.regions.get("us")!.host, "us.internal");
  assert.equal(config.pin.cookie, "__Host-vestibule-region");
  assert.equal(config.pin.header, "x-vestibule-region");
  assert.equal(config.pin.secure, true);
  assert.equal(config.bodyLimitBytes, 1_048_576);
  assert.equal(config.trustedProxyHops, 0);
  assert.equal(config.debugHeaders, false);
  assert.equal(config.rules[0].type, "regional");
});

Deno.test("parseRules() accepts the shipped rules.json", async () => {
  const text = await Deno.readTextFile(new URL("../rules.json", import.meta.url));
  const config = parseRules(text, {
    env: (name) => ENV[name] ?? (name.endsWith("ORIGIN") ? "http://x.test" : "s"),
  });
  assert.deepEqual(config.rules.map((r) => r.name), [
    "website",
    "old-help",
    "login",
    "signup",
    "join-class",
    "staff-switch-region",
    "app",
  ]);
});

Deno.test("parseRules() refuses impossible configurations, naming the rule and the field", async (t) => {
  await t.step("an invalid regex", () =>
    refuses(
      base({ rules: [{ name: "login", type: "regional", match: { path: "^/(login" } }] }),
      'Cannot compile rule "login" (rules[0]): invalid regex in match.path:',
    ));
  await t.step("an invalid header regex", () =>
    refuses(
      base({ rules: [{ name: "h", type: "regional", match: { headers: { "X-A": "[" } } }] }),
      'rule "h"',
      "match.headers.X-A",
    ));
  await t.step("an origin header whose value holds a line break (header injection)", () =>
    refuses(
      base({
        regions: {
          au: { origin: "http://au.internal", headers: { "x-origin-secret": "s\r\nx-evil: 1" } },
          us: { origin: "http://us.internal" },
        },
      }),
      "regions.au.headers.x-origin-secret: a header value must not contain CR, LF, NUL",
    ));
  await t.step(
    "an origin header written twice in different letter case (sent joined)",
    () =>
      refuses(
        base({
          regions: {
            au: {
              origin: "http://au.internal",
              headers: { "X-Origin-Secret": "old", "x-origin-secret": "new" },
            },
            us: { origin: "http://us.internal" },
          },
        }),
        'regions.au.headers.x-origin-secret: header "x-origin-secret" is also written as "X-Origin-Secret"',
      ),
  );
  await t.step("a matched header written twice in different letter case", () =>
    refuses(
      base({
        rules: [{ name: "h", type: "regional", match: { headers: { "X-A": "1", "x-a": "2" } } }],
      }),
      'rule "h"',
      "match.headers.x-a",
    ));
  await t.step("an origin header name that is not a token", () =>
    refuses(
      base({ upstreams: { website: { origin: "http://web.internal", headers: { "x a": "1" } } } }),
      "upstreams.website.headers",
      "not a valid header name",
    ));
  await t.step("an unknown upstream", () =>
    refuses(
      base({ rules: [{ name: "web", type: "global", upstream: "nope" }] }),
      'Cannot compile rule "web" (rules[0]): upstream: "nope" is not in upstreams',
    ));
  await t.step(
    "a default_region that is not a region",
    () => refuses(base({ default_region: "eu" }), 'default_region: "eu" is not a region'),
  );
  await t.step(
    "a geo country mapped to an unknown region",
    () =>
      refuses(base({ geo: { countries: { NZ: "nz" } } }), 'geo.countries.NZ: "nz" is not a region'),
  );
  await t.step("duplicate rule names", () =>
    refuses(
      base({
        rules: [
          { name: "a", type: "regional", match: { path: "^/x" } },
          { name: "a", type: "regional" },
        ],
      }),
      'rule "a" (rules[1]): duplicate name, also rules[0]',
    ));
  await t.step("a rule after a catch-all", () =>
    refuses(
      base({
        rules: [{ name: "app", type: "regional" }, {
          name: "late",
          type: "regional",
          match: { path: "^/" },
        }],
      }),
      'rule "late" (rules[1]): it can never match: rule "app" before it is a catch-all',
    ));
  await t.step("a global rule with both upstream and redirect", () =>
    refuses(
      base({
        rules: [{ name: "g", type: "global", upstream: "website", redirect: { location: "/x" } }],
      }),
      'rule "g" (rules[0]): a global rule needs exactly one of upstream or redirect',
    ));
  await t.step(
    "a global rule with neither upstream nor redirect",
    () =>
      refuses(
        base({ rules: [{ name: "g", type: "global" }] }),
        "needs exactly one of upstream or redirect",
      ),
  );
  await t.step(
    "a broadcast rule without success",
    () =>
      refuses(
        base({ rules: [{ name: "login", type: "broadcast" }] }),
        'rule "login" (rules[0]): success:',
      ),
  );
  await t.step("a broadcast rule with an empty success", () =>
    refuses(
      base({ rules: [{ name: "login", type: "broadcast", success: {} }] }),
      "success needs at least one of status, set_cookie, headers or json",
    ));
  await t.step("a redirect status that is not a redirect", () =>
    refuses(
      base({
        rules: [{ name: "old", type: "global", redirect: { location: "/new", status: 200 } }],
      }),
      'rule "old" (rules[0]): redirect.status: 200 is not a redirect status',
    ));
  await t.step("an origin that is not an absolute http(s) URL", () => {
    refuses(
      base({ regions: { au: { origin: "au.internal" }, us: { origin: "${US_ORIGIN}" } } }),
      'regions.au.origin: "au.internal" is not an absolute http(s) URL',
    );
    refuses(base({ upstreams: { website: { origin: "ftp://web" } } }), "upstreams.website.origin");
    refuses(
      base({ upstreams: { website: { origin: "http://web/path" } } }),
      "must be an origin only",
    );
  });
  await t.step(
    "a __Host- pin cookie with secure: false",
    () =>
      refuses(base({ pin: { secure: false } }), 'pin.secure: the cookie "__Host-vestibule-region"'),
  );
  await t.step("a SameSite=None pin cookie with secure: false", () => {
    refuses(
      base({ pin: { cookie: "vestibule-region", secure: false, same_site: "none" } }),
      'pin.same_site: "none" needs secure: true',
    );
    refuses(base({ pin: { same_site: "strict" } }), "pin.same_site");
  });
  await t.step("unknown keys (typos) anywhere", () => {
    refuses(
      base({ rules: [{ name: "app", type: "regional", macth: {} }] }),
      'rule "app" (rules[0])',
      "macth",
    );
    refuses(base({ regionz: {} }), "regionz");
    refuses(
      base({ rules: [{ name: "a", type: "regional", match: { paht: "^/" } }] }),
      "match",
      "paht",
    );
  });
  await t.step(
    "an unknown rule type",
    () => refuses(base({ rules: [{ name: "x", type: "regionl" }] }), 'rule "x" (rules[0]): type'),
  );
  await t.step("a body matcher with two kinds", () =>
    refuses(
      base({ rules: [{ name: "b", type: "regional", match: { body: { json: {}, regex: "x" } } }] }),
      "match.body needs exactly one of json, form or regex, got 2",
    ));
  await t.step("region_from naming a group the path regex lacks", () =>
    refuses(
      base({
        rules: [{
          name: "s",
          type: "regional",
          match: { path: "^/s/(\\w+)$" },
          region_from: { path_group: "region" },
        }],
      }),
      'rule "s" (rules[0]): region_from.path_group: match.path has no named group "region"',
    ));
  await t.step("a redirect location that no Location header can carry", () => {
    for (const location of ["https://help.example.com\n/$1", "https://help.example.com/€"]) {
      refuses(
        base({ rules: [helpRedirect({ redirect: { location } })] }),
        'rule "help" (rules[0]): redirect.location: a header value must not contain',
      );
    }
  });
  await t.step(
    "a path regex with a literal non-ASCII character, which no path can match",
    () =>
      refuses(
        base({ rules: [{ name: "cafe", type: "regional", match: { path: "^/café$" } }] }),
        'rule "cafe" (rules[0]): match.path: paths are matched percent-encoded',
      ),
  );
  await t.step("a path regex written with escapes a matched path never has", () => {
    for (const [path, hint] of [["^/caf%c3%a9$", "write %C3"], ["^/%7Ebob/", 'write "~"']]) {
      refuses(
        base({ rules: [{ name: "r", type: "regional", match: { path } }] }),
        'rule "r" (rules[0]): match.path: paths are matched with',
        hint,
      );
    }
  });
  await t.step("a timeout setTimeout cannot hold (it would fire at once)", () => {
    refuses(base({ body_timeout_ms: 2 ** 31 }), "body_timeout_ms");
    refuses(
      base({
        regions: {
          au: { origin: "${AU_ORIGIN}", timeout_ms: 2 ** 31 },
          us: { origin: "${US_ORIGIN}" },
        },
      }),
      "regions.au.timeout_ms",
    );
  });
  await t.step("a timeout on a redirect rule, which calls no upstream", () =>
    refuses(
      base({
        rules: [
          helpRedirect({ redirect: { location: "https://help.example.com/" }, timeout_ms: 1000 }),
        ],
      }),
      'rule "help" (rules[0]): timeout_ms: a redirect rule calls no upstream',
    ));
  await t.step("a rule after an empty match, which matches everything", () => {
    for (const match of [{}, { headers: {} }, { query: {} }]) {
      refuses(
        base({
          rules: [
            { name: "everything", type: "regional", match },
            { name: "api", type: "regional", match: { path: "^/api/" } },
          ],
        }),
        'rule "api" (rules[1])',
        'it can never match: rule "everything" before it is a catch-all',
      );
    }
  });
  await t.step(
    "header names that no request can carry (pin, geo, match and success headers)",
    () => {
      refuses(
        base({ pin: { header: "x vestibule region" } }),
        "pin.header",
        "not a valid header name",
      );
      refuses(base({ geo: { header: "cf ipcountry" } }), "geo.header", "not a valid header name");
      refuses(
        base({ rules: [{ name: "t", type: "regional", match: { headers: { "x tenant": "." } } }] }),
        'rule "t"',
        "match.headers",
        "not a valid header name",
      );
      refuses(
        base({ rules: [{ name: "b", type: "broadcast", success: { headers: { "x ok": "1" } } }] }),
        'rule "b"',
        "success.headers",
        "not a valid header name",
      );
    },
  );
  await t.step("a value that fits no form of a union names what is wrong inside it", () => {
    refuses(
      base({
        rules: [{
          name: "switch",
          type: "regional",
          match: { path: "^/s/(?<region>[a-z]+)$" },
          region_from: { path_grop: "region" },
        }],
      }),
      'rule "switch"',
      'region_from: path_group: Invalid input: expected string, received undefined; Unrecognized key: "path_grop"',
    );
    refuses(
      base({ rules: [{ name: "login", type: "broadcast", success: { status: "2XX" } }] }),
      'rule "login"',
      'success.status: expected a list of status codes such as [302], or a class: "1xx", "2xx", "3xx", "4xx" or "5xx"',
    );
  });
  await t.step("an origin without a scheme is one problem, not also a missing region", () => {
    assert.throws(
      () =>
        parseRules(
          JSON.stringify(base({
            regions: { au: { origin: "http://au.internal" }, us: { origin: "us.internal:8000" } },
            upstreams: { website: { origin: "www.internal" } },
            geo: { header: "cf-ipcountry", countries: { US: "us" } },
            rules: [
              { name: "website", type: "global", match: { path: "^/about" }, upstream: "website" },
              { name: "app", type: "regional" },
            ],
          })),
          { env },
        ),
      (error: unknown) => {
        assert.ok(error instanceof RulesError);
        assert.deepEqual(error.problems, [
          'regions.us.origin: "us.internal:8000" is not an absolute http(s) URL',
          'upstreams.website.origin: "www.internal" is not an absolute http(s) URL',
        ]);
        return true;
      },
    );
  });
  await t.step("pin_on without region_from, which could never pin", () =>
    refuses(
      base({
        rules: [{ name: "s", type: "regional", pin_on: { status: [200] } }],
      }),
      'rule "s" (rules[0]): pin_on: needs region_from',
    ));
  await t.step("a rule name no debug header can carry (not printable ASCII)", () => {
    for (const name of ["登录", "log\nin", " app", "app "]) {
      refuses(
        base({ rules: [{ name, type: "regional" }] }),
        "name: a name must be printable ASCII without a space at either end",
      );
    }
  });
  await t.step(
    "an upstream named like a region (one name in logs and metrics, two origins)",
    () =>
      refuses(
        base({ upstreams: { us: { origin: "http://web.internal" } } }),
        'upstreams.us: "us" is already a region\'s name',
      ),
  );
  await t.step("an OCAP mount that routing would read otherwise, or under /_vestibule/", () => {
    const ocap = (path: string) => ({
      ocap: { path, key: "k".repeat(16), targets: { p: { origin: "https://p.example" } } },
    });
    for (const path of ["/a/../b", "/./x", "/%5Focap", "/o/", "/o?x", "o"]) {
      refuses(base(ocap(path)), "ocap.path: a path of /-separated segments of letters");
    }
    for (const path of ["/_vestibule", "/_vestibule/ocap"]) {
      refuses(base(ocap(path)), `ocap.path: "${path}" is under /_vestibule/`);
    }
    parseRules(JSON.stringify(base(ocap("/_ocap/v1"))), { env });
  });
  await t.step("an OCAP key no caller can send, and a TTL the store refuses", async (t) => {
    const section = (fields: Record<string, unknown>) => ({
      ocap: { key: "k".repeat(16), targets: { p: { origin: "https://p.example" } }, ...fields },
    });
    // HTTP trims a header value's spaces; fetch cannot send €: every call was a 401.
    for (const key of [" key-with-spaces-0123456789 ", "key€-0123456789abcdefghij"]) {
      await t.step(
        JSON.stringify(key),
        () => refuses(base(section({ key })), "ocap.key: 16 or more printable ASCII characters"),
      );
    }
    // Deno KV refuses an expireIn this large: no answer was ever kept, codes redeemed twice.
    await t.step(
      "ttl_seconds 1e13",
      () => refuses(base(section({ ttl_seconds: 1e13 })), "ocap.ttl_seconds"),
    );
    await t.step("a target's ttl_seconds 1e13", () =>
      refuses(
        base(section({ targets: { p: { origin: "https://p.example", ttl_seconds: 1e13 } } })),
        "ocap.targets.p.ttl_seconds",
      ));
  });
  await t.step("a redirect a client would not get as written", async (t) => {
    const redirect = (
      location: string,
      match: Record<string, unknown> = { path: "^/help/(.*)$" },
    ) => base({ rules: [{ name: "help", type: "global", match, redirect: { location } }] });
    await t.step(
      "non-ASCII (sent as Latin-1 bytes, read by browsers as UTF-8)",
      () =>
        refuses(
          redirect("https://help.example.com/über/$1"),
          'rule "help"',
          "redirect.location: write it in ASCII",
        ),
    );
    await t.step(
      "a scheme without // (another host under an http page)",
      () =>
        refuses(
          redirect("https:help.example.com$1"),
          'rule "help"',
          "redirect.location: write // after the scheme",
        ),
    );
    await t.step(
      "$2 with one group (always empty)",
      () =>
        refuses(
          redirect("https://help.example.com/$2"),
          'rule "help"',
          "redirect.location: $2 but match.path has 1 group",
        ),
    );
    await t.step(
      "$1 without a path regex",
      () =>
        refuses(
          redirect("https://help.example.com/$1", { host: "^help\\." }),
          'rule "help"',
          "redirect.location: $1 needs match.path",
        ),
    );
    await t.step("only the regex's own error when match.path does not compile", () => {
      assert.throws(
        () =>
          parseRules(
            JSON.stringify(
              redirect("https://docs.example.com/$1/$2", { path: "^/docs/(([a-z]+)/(.*)$" }),
            ),
            { env },
          ),
        (error: unknown) => {
          assert.ok(error instanceof RulesError);
          assert.deepEqual(error.problems, [
            'Cannot compile rule "help" (rules[0]): invalid regex in match.path: /^/docs/(([a-z]+)/(.*)$/: Unterminated group',
          ]);
          return true;
        },
      );
    });
    await t.step("forward_cookies, as timeout_ms (it calls no upstream)", () =>
      refuses(
        base({
          rules: [{
            name: "help",
            type: "global",
            match: { path: "^/help/" },
            redirect: { location: "https://help.example.com/" },
            forward_cookies: ["sessionid"],
          }],
        }),
        'rule "help" (rules[0]): forward_cookies: a redirect rule calls no upstream',
      ));
  });
  await t.step(
    "every problem at once",
    () =>
      refuses(base({ default_region: "eu", rules: [{ name: "g", type: "global" }] }), "2 problems"),
  );
});

Deno.test("parseRules() names a missing environment variable and where it is used", () => {
  assert.throws(
    () =>
      parseRules(JSON.stringify(base({ regions: { au: { origin: "${NOPE_ORIGIN}" } } })), { env }),
    (error: unknown) =>
      error instanceof ReferenceError &&
      error.message ===
        'Cannot read rules: environment variable "NOPE_ORIGIN" is not set (used at regions.au.origin)',
  );
});

Deno.test("parseRules() secret leak: start-up errors do not print a referenced secret or a pasted header line", async (t) => {
  await t.step("an invalid regex built from a ${NAME} reference", () => {
    const file = base({
      rules: [{
        name: "internal",
        type: "regional",
        match: { headers: { "x-internal-key": "^${INTERNAL_KEY}$" } },
      }],
    });
    assert.throws(
      () =>
        parseRules(JSON.stringify(file), {
          env: (name) => name === "INTERNAL_KEY" ? "+sk_live_51Hx(Q" : env(name),
        }),
      (error: unknown) => {
        assert.ok(error instanceof RulesError);
        assert.ok(!error.message.includes("sk_live_51Hx"), error.message);
        assert.ok(
          error.message.includes('rule "internal"') &&
            error.message.includes("/^${INTERNAL_KEY}$/"),
          error.message,
        );
        return true;
      },
    );
  });
  await t.step(
    "an origin quoted with its query or credentials cut, a ${NAME} in its path",
    async (t) => {
      for (
        const origin of [
          "https://hooks.example.com/services/${HOOK_TOKEN}?v=1",
          "https://hooks.example.com/services/${HOOK_TOKEN}#x",
          "https://deploy@hooks.example.com/services/${HOOK_TOKEN}",
        ]
      ) {
        await t.step(origin, () => {
          const file = base({ regions: { au: { origin }, us: { origin: "${US_ORIGIN}" } } });
          assert.throws(
            () =>
              parseRules(JSON.stringify(file), {
                env: (name) => name === "HOOK_TOKEN" ? "T0KEN-a8f3e2c1d9b7" : env(name),
              }),
            (error: unknown) => {
              assert.ok(error instanceof RulesError);
              assert.ok(!error.message.includes("T0KEN-a8f3e2c1d9b7"), error.message);
              assert.ok(error.message.includes("/services/${HOOK_TOKEN}"), error.message);
              return true;
            },
          );
        });
      }
    },
  );
  await t.step("a value that is also a word of the message leaves the message alone", () => {
    const file = base({
      regions: {
        au: { origin: "http://au.internal", headers: { "x-edge-verified": "${EDGE_VERIFIED}" } },
        us: { origin: "http://us.internal" },
      },
      pin: { cookie: "__Host-region", secure: false },
    });
    assert.throws(
      () =>
        parseRules(JSON.stringify(file), {
          env: (name) => name === "EDGE_VERIFIED" ? "true" : env(name),
        }),
      (error: unknown) => {
        assert.ok(error instanceof RulesError);
        assert.match(error.message, /which browsers only accept with secure: true$/);
        return true;
      },
    );
  });
  await t.step("a missing variable under a header key that is a pasted header line", () => {
    const file = base({
      upstreams: {
        web: {
          origin: "http://web.internal",
          headers: { "Authorization: Bearer sk_live_51Hx": "${WEB_SECRET}" },
        },
      },
    });
    assert.throws(
      () => parseRules(JSON.stringify(file), { env }),
      (error: unknown) => {
        assert.ok(error instanceof ReferenceError);
        assert.equal(
          error.message,
          'Cannot read rules: environment variable "WEB_SECRET" is not set (used at upstreams.web.headers.(a name that is not a header token))',
        );
        return true;
      },
    );
  });
});

Deno.test("parseRules() secret typo: a ${...} that is not a well-formed reference is refused, not sent as the secret", () => {
  for (const value of ["${AU-SECRET}", "${ AU_SECRET }", "${AU_SECRET", "ok-${US_ORIGIN}-${}"]) {
    assert.throws(
      () =>
        parseRules(
          JSON.stringify(base({
            upstreams: {
              website: { origin: "http://web.internal", headers: { "x-origin-secret": value } },
            },
          })),
          { env },
        ),
      (error: unknown) =>
        error instanceof ReferenceError &&
        error.message.includes(
          "upstreams.website.headers.x-origin-secret is not an environment reference",
        ),
      value,
    );
  }
  // A well-formed reference whose value holds "${" is the operator's text, not a reference.
  const config = parseRules(
    JSON.stringify(base({
      upstreams: { website: { origin: "http://web.internal", headers: { "x-s": "${SECRET}" } } },
    })),
    { env: (name) => name === "SECRET" ? "a${b}" : env(name) },
  );
  assert.deepEqual(config.upstreams.get("website")?.headers, [["x-s", "a${b}"]]);
});

Deno.test("parseRules() refuses text that is not JSON with a SyntaxError naming the source", () => {
  assert.throws(
    () => parseRules("{ nope", { env, source: 'rules file "x.json"' }),
    (error: unknown) =>
      error instanceof SyntaxError && error.message.startsWith('Cannot parse rules file "x.json":'),
  );
});

Deno.test("parseRules() credential leak: an origin it refuses is quoted without user, password or query", () => {
  const secret = "hunter2-S3CRET";
  for (
    const origin of [
      `https://deploy:${secret}@au.internal/`,
      `https://deploy:${secret}@au.internal/base?token=${secret}`,
      `deploy:${secret}@au.internal`,
      `https://au.internal/?token=${secret}`,
      // A password that breaks the URL: base64 holds '/', any password may hold '?' or '#'.
      `https://deploy:a/${secret}@au.internal`,
      `https://deploy:a?${secret}@au.internal`,
      `https://deploy:a#${secret}@au.internal`,
      `https://deploy:${secret}@a@au.internal`,
    ]
  ) {
    const file = base({ regions: { au: { origin: "${AU_ORIGIN}" } }, default_region: "au" });
    assert.throws(
      () => parseRules(JSON.stringify(file), { env: () => origin }),
      (error: unknown) => {
        assert.ok(error instanceof RulesError);
        assert.match(error.message, /regions\.au\.origin: /);
        assert.ok(!error.message.includes(secret), error.message);
        return true;
      },
      origin,
    );
  }
  refuses(
    base({ upstreams: { website: { origin: "https://u:p@web.internal/x?t=1" } } }),
    'upstreams.website.origin: "https://***@web.internal/x?***" must be an origin only',
  );
});

Deno.test("parseRules() refuses a key written twice, which JSON.parse would silently drop", () => {
  const text = `{
  "regions": { "au": { "origin": "https://au.example" }, "au": { "origin": "https://staging.example" } },
  "default_region": "au",
  "rules": [{ "name": "app", "type": "regional" }]
}`;
  assert.throws(() => parseRules(text, { env, source: 'rules file "x.json"' }), {
    name: "SyntaxError",
    message: 'Cannot parse rules file "x.json": key "au" appears twice in one object (line 2); ' +
      "remove one",
  });
});

Deno.test("parseRules() prototype key: a __proto__ key is refused, not dropped into a rule that matches every body", async (t) => {
  for (
    const [where, match, line] of [
      ["body.json", `{ "body": { "json": { "__proto__": {} } } }`, 4],
      ["query", `{ "query": { "__proto__": "." } }`, 4],
      ["headers", `{ "headers": {\n "__proto__": "." } }`, 5],
    ] as const
  ) {
    await t.step(where, () => {
      // Dropped, the body rule matched every JSON body and the query rule was a catch-all.
      const text = `{
  "regions": { "us": { "origin": "https://us.example" } }, "default_region": "us",
  "rules": [
    { "name": "block", "type": "regional", "match": ${match} },
    { "name": "app", "type": "regional" }
  ]
}`;
      assert.throws(() => parseRules(text, { env, source: 'rules file "x.json"' }), {
        name: "SyntaxError",
        message: `Cannot parse rules file "x.json": key "__proto__" (line ${line}) cannot be ` +
          "used: JavaScript objects read it as their prototype, not as data",
      });
    });
  }
});

Deno.test("parseRules() reads a file saved with a UTF-8 byte order mark (Windows editors)", () => {
  const config = parseRules("\uFEFF" + JSON.stringify(base()), { env });
  assert.deepEqual(config.rules.map((rule) => rule.name), ["app"]);
});

const app = { name: "app", type: "regional" };

/** The rule the router picks for a request under `file` (which start-up accepted). */
async function ruleFor(file: unknown, method: string, url: string): Promise<string | undefined> {
  const config = parseRules(JSON.stringify(file), { env });
  return (await explainRequest({ method, url }, config)).rule;
}

Deno.test("rule confusion: a success of only an empty headers map is refused (it counted a 500 as success)", async (t) => {
  const file = base({ rules: [{ name: "login", type: "broadcast", success: { headers: {} } }] });
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
    // The URL parser percent-encodes these in every path (a browser shows %20 as a space).
    ["a path with a space", { path: "^/my docs/" }, "https://app.example.com/my docs/a"],
    ["a path with a quote", { path: '^/q"$' }, 'https://app.example.com/q"'],
    ["a path with escaped braces", { path: "^/a\\{b\\}$" }, "https://app.example.com/a{b}"],
    ["a path with an escaped space", { path: "^/my\\ docs/" }, "https://app.example.com/my docs/"],
    ["a path with \\x20", { path: "^/my\\x20docs/" }, "https://app.example.com/my docs/a"],
    // An OpenAPI template: without the u flag, {id} is no quantifier but literal text.
    ["a path template with {id}", { path: "^/users/{id}$" }, "https://app.example.com/users/{id}"],
    [
      "a path template with {id}/",
      { path: "^/users/{id}/edit" },
      "https://app.example.com/users/{id}/edit",
    ],
    ["a path with \\u0020", { path: "^/my\\u0020docs/" }, "https://app.example.com/my docs/a"],
    // No quantifier either: `{}` and `{,3}` are literal text, as is a lone `}`.
    ["a path with {}", { path: "^/users/{}$" }, "https://app.example.com/users/{}"],
    ["a path with {,3}", { path: "^/users/{,3}$" }, "https://app.example.com/users/{,3}"],
    ["a path with a lone }", { path: "^/a}$" }, "https://app.example.com/a}"],
    ["an IPv6 host without brackets", { host: "^::1$" }, "http://[::1]:8080/"],
    ["an IPv6 host without brackets, longer", { host: "^2001:db8::1$" }, "http://[2001:db8::1]/"],
    ["an IPv6 host without brackets, upper case", { host: "^FE80::1$" }, "http://[fe80::1]/"],
    [
      "a path with # (a fragment, never sent)",
      { path: "^/docs#intro$" },
      "https://app.example.com/docs#intro",
    ],
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

Deno.test("parseRules(): a match.path whose quantifier makes a brace or a second / optional is accepted, and matches", async (t) => {
  const cases: [string, string, string][] = [
    ["an open quantifier {1,}", "^/v\\d{1,}/x$", "https://app.example.com/v12/x"],
    ["a quantifier {2}", "^/v\\d{2}/x$", "https://app.example.com/v12/x"],
    ["a second / made optional", "^/a//?b$", "https://app.example.com/a/b"],
  ];
  for (const [what, path, url] of cases) {
    await t.step(what, async () => {
      const file = base({ rules: [{ name: "special", type: "regional", match: { path } }, app] });
      assert.equal(await ruleFor(file, "GET", url), "special");
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

/** A file whose first rule, "api", has `match` and sends to the website upstream. */
const apiRule = (match: Record<string, unknown>) =>
  base({ rules: [{ name: "api", type: "global", match, upstream: "website" }, app] });

Deno.test("parseRules(): a regex whose \\? sits in an optional group matches, so it is accepted", async (t) => {
  // nginx/Envoy habit "query allowed or not": the group is optional, so the regex matches the
  // bare path the router sees; ddaecae refused these.
  for (
    const [path, url] of [
      ["^/api/users(\\?.*)?$", "https://app.example.com/api/users?page=2"],
      ["^/search/?(\\?.*)?$", "https://app.example.com/search/?q=x"],
      ["^/page(?:\\?p=\\d+)?$", "https://app.example.com/page?p=3"],
      ["^x?/api", "https://app.example.com/api"],
    ]
  ) {
    await t.step(path, async () => {
      assert.equal(await ruleFor(apiRule({ path }), "GET", url), "api");
    });
  }
});

Deno.test("parseRules(): an unanchored IPv6 literal matches [::1], so it is no port and is accepted", async (t) => {
  for (
    const [host, url] of [["::1", "http://[::1]:8080/"], ["2001:db8::1", "http://[2001:db8::1]/"]]
  ) {
    await t.step(host, async () => {
      assert.equal(await ruleFor(apiRule({ host }), "GET", url), "api");
    });
  }
});

Deno.test("parseRules(): regex syntax with <, >, { or a space in a class is no literal the path lacks", async (t) => {
  for (
    const [path, url] of [
      ["^/(?<id>\\d+)/\\k<id>$", "https://app.example.com/12/12"],
      ["^/(?<=/)a{2}(?<!b)(?=/|$)", "https://app.example.com/aa"],
      ["^/[^ <>]+$", "https://app.example.com/plain"],
      ["^/[^\\]<>]+$", "https://app.example.com/plain"],
      ["^/my%20docs/", "https://app.example.com/my docs/a"],
      // Where the character may be absent, the regex still matches paths.
      ["^(?!.* )/api/", "https://app.example.com/api/x"],
      ["^/api/(?!.*#)", "https://app.example.com/api/x"],
      ["^/(?<! )api/", "https://app.example.com/api/x"],
      ["^/api/ ?$", "https://app.example.com/api/"],
      ["^/api/ {0,1}$", "https://app.example.com/api/"],
      ["^/api/ {0}$", "https://app.example.com/api/"],
      ["^/api/\\x20*$", "https://app.example.com/api/"],
    ]
  ) {
    await t.step(path, async () => {
      assert.equal(await ruleFor(apiRule({ path }), "GET", url), "api");
    });
  }
});

Deno.test("parseRules(): a region or upstream header that fetch overwrites (Host, Content-Length, Transfer-Encoding) is refused", async (t) => {
  for (const name of ["Host", "content-length", "Transfer-Encoding"]) {
    await t.step(name, () => {
      refuses(
        base({
          regions: {
            au: { origin: "${AU_ORIGIN}" },
            us: { origin: "http://10.0.0.1", headers: { [name]: "us.app.internal" } },
          },
        }),
        `regions.us.headers.${name}: fetch sets ${name} itself`,
      );
      refuses(
        base({
          upstreams: { website: { origin: "http://web.internal", headers: { [name]: "1" } } },
        }),
        `upstreams.website.headers.${name}`,
      );
    });
  }
  // Where the host belongs instead.
  refuses(
    base({
      upstreams: { website: { origin: "http://10.0.0.1", headers: { host: "web.internal" } } },
    }),
    "upstreams.website.headers.host: fetch sets host itself and drops this value; put the host to send in origin",
  );
});

Deno.test("parseRules(): a region or upstream header named Via is refused: it would replace vestibule's own entry and its loop guard", () => {
  for (const name of ["Via", "via"]) {
    refuses(
      base({
        upstreams: { website: { origin: "http://web.internal", headers: { [name]: "1.1 cdn" } } },
      }),
      `upstreams.website.headers.${name}: vestibule sends its own Via entry`,
    );
    refuses(
      base({
        regions: {
          au: { origin: "${AU_ORIGIN}" },
          us: { origin: "http://10.0.0.1", headers: { [name]: "1.1 cdn" } },
        },
      }),
      `regions.us.headers.${name}: vestibule sends its own Via entry`,
    );
  }
  // Only Via itself: a header of the application's that merely holds the word is its own.
  for (const name of ["X-Via-Tenant", "Via-Partner"]) {
    accepts(
      base({ upstreams: { website: { origin: "http://web.internal", headers: { [name]: "a" } } } }),
    );
  }
});

Deno.test("parseRules() a success.set_cookie with a stray space is read as the cookie name, as forward_cookies are", () => {
  const file = base({
    rules: [
      {
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/login$" },
        success: { set_cookie: " sessionid " },
      },
      app,
    ],
  });
  const [login] = accepts(file).rules;
  assert.equal(login.type === "broadcast" && login.success.setCookie, "sessionid");
});

Deno.test("rule confusion: a blank success.set_cookie is refused (trimmed to nothing, it counted a 500 as success)", async (t) => {
  for (const blank of [" ", "\t", "\u00a0"]) {
    await t.step(JSON.stringify(blank), () => {
      refuses(
        base({
          rules: [{ name: "login", type: "broadcast", success: { set_cookie: blank } }, app],
        }),
        'rule "login"',
        "success.set_cookie needs a cookie name, not only spaces",
      );
    });
  }
});

Deno.test("parseRules(): a plain regex the README says start-up refuses is refused or matches", async (t) => {
  // README: in a regex without alternation, classes or groups, start-up refuses `//`, `\?` and
  // `^` followed by a letter, digit, `%`, `~`, `-`, an escaped punctuation mark or `$`, and a
  // host with a scheme or port.
  const cases: [string, Record<string, string>, string][] = [
    [
      "a path starting ^ with an escaped character, not /",
      { path: "^\\.well-known/acme-challenge/" },
      "https://app.example.com/.well-known/acme-challenge/token",
    ],
    ["a path of only ^$", { path: "^$" }, "https://app.example.com/"],
    ["an IPv6 host with a port", { host: "^\\[::1\\]:8080$" }, "http://[::1]:8080/"],
    [
      "a host with a port written as \\d+",
      { host: "^app\\.example\\.com:\\d+$" },
      "http://app.example.com:8000/",
    ],
  ];
  for (const [what, match, url] of cases) {
    await t.step(what, async () => {
      let chosen: string | undefined = "(refused at start-up)";
      try {
        chosen = await ruleFor(apiRule(match), "GET", url);
      } catch (error) {
        assert.ok(error instanceof RulesError, String(error));
        assert.match(error.message, /rule "api" \(rules\[0\]\): match\.(path|host)/);
      }
      assert.ok(
        chosen === "(refused at start-up)" || chosen === "api",
        `accepted, and ${url} goes to rule "${chosen}"`,
      );
    });
  }
});

Deno.test("credential leak: a refused origin whose password holds '@' is quoted without any of it", () => {
  let message = "";
  try {
    parseRules(
      JSON.stringify({
        regions: { us: { origin: "http://admin:p@ss-w0rd@db.example/x" } },
        default_region: "us",
        rules: [{ name: "app", type: "regional" }],
      }),
      { env: () => undefined },
    );
  } catch (error) {
    message = (error as Error).message;
  }
  assert.match(message, /regions\.us\.origin/);
  assert.doesNotMatch(message, /p@ss|ss-w0rd|admin/);
  assert.match(message, /\*\*\*@db\.example/);
});

Deno.test("invalid rules start anyway: a success.json with neither or both of equals and exists is refused, naming the rule", async (t) => {
  const load = (json: Record<string, unknown>) => () =>
    parseRules(
      JSON.stringify({
        regions: { us: { origin: "http://us.test" } },
        default_region: "us",
        rules: [{ name: "signup", type: "broadcast", success: { json } }],
      }),
      { env: () => undefined },
    );
  for (
    const [label, json] of [
      ["neither", { path: "ok" }],
      ["both", { path: "ok", equals: true, exists: true }],
    ] as const
  ) {
    await t.step(label, () => {
      assert.throws(
        load(json),
        /rule "signup" \(rules\[0\]\): success\.json needs exactly one of equals or exists/,
      );
    });
  }
});

Deno.test("invalid rules start anyway: an empty regex (which matches everything) is refused, naming the rule and field", () => {
  refuses(
    base({
      rules: [{ name: "internal", type: "regional", match: { headers: { "X-Internal-Key": "" } } }],
    }),
    /rule "internal" \(rules\[0\]\): match\.headers\.X-Internal-Key/,
  );
});

Deno.test("invalid rules start anyway: an ocap key shorter than 16 characters is refused", () => {
  refuses(
    base({ ocap: { key: "short", targets: { api: { origin: "http://api.test" } } } }),
    "ocap.key",
  );
});

Deno.test("an empty header name is refused where the rules file names a header", () => {
  // Headers refuses "" at request time: start-up must say so, not the first request.
  refuses(base({ pin: { header: "" } }), "pin.header", "not a valid header name");
  refuses(base({ geo: { header: "" } }), "geo.header", "not a valid header name");
  refuses(
    base({ upstreams: { website: { origin: "http://web.internal", headers: { "": "1" } } } }),
    "upstreams.website.headers",
  );
});

Deno.test("parseRules() status typo: a bare status code is refused with a message that names the list form", async (t) => {
  // `redirect.status` takes one number, so `"status": 302` is the natural slip in a success rule;
  // an error offering only the classes leads the operator to "3xx", which also counts a 301.
  const LIST_FORM = /status: expected a list of status codes such as \[302\], or a class/;
  const login = (fields: Record<string, unknown>) => ({
    name: "login",
    type: "broadcast",
    match: { methods: ["POST"], path: "^/accounts/login/$" },
    success: { status: [302], set_cookie: "sessionid" },
    ...fields,
  });
  for (const status of [302, "302"]) {
    await t.step(`success.status ${JSON.stringify(status)}`, () => {
      refuses(base({ rules: [login({ success: { status } })] }), 'rule "login"', LIST_FORM);
    });
  }
  await t.step("prefer_failure.status 401", () => {
    refuses(
      base({ rules: [login({ prefer_failure: { status: 401 } })] }),
      'rule "login"',
      /prefer_failure\.status: expected a list of status codes/,
    );
  });
  await t.step("pin_on.status 302", () => {
    const rule = {
      name: "switch",
      type: "regional",
      match: { methods: ["POST"], path: "^/s/(?<region>[a-z]+)$" },
      region_from: { path_group: "region" },
      pin_on: { status: 302 },
    };
    refuses(base({ rules: [rule] }), 'rule "switch"', /pin_on\.status: expected a list/);
  });
});

Deno.test("parseRules(): geo.countries with one country and nothing that reads a country is refused", () => {
  refuses(base({ geo: { countries: { AU: "au" } } }), "geo.countries: nothing reads a country");
});

Deno.test("parseRules(): a pin cookie with any cookie prefix, in any letter case, needs secure: true", async (t) => {
  // Browsers match the prefixes case-insensitively (RFC 6265bis §4.1.3) and refuse the cookie.
  for (const cookie of ["__Secure-region", "__host-region", "__SECURE-region"]) {
    await t.step(cookie, () =>
      refuses(
        base({ pin: { cookie, secure: false } }),
        `pin.secure: the cookie "${cookie}" has a __Host-/__Secure- prefix`,
      ));
  }
});

Deno.test("parseRules(): a rule shadowed by a methods-only rule is refused naming the earlier rule", () => {
  refuses(
    base({
      rules: [
        { name: "posts", type: "regional", match: { methods: ["POST"] } },
        { name: "login", type: "regional", match: { methods: ["POST"], path: "^/login$" } },
        app,
      ],
    }),
    'Cannot compile rule "login" (rules[1]): it can never match: rule "posts" before it',
  );
  // A later rule that adds a host is shadowed alike: "gets" takes every GET, on every host.
  refuses(
    base({
      rules: [
        { name: "gets", type: "regional", match: { methods: ["GET"] } },
        { name: "admin", type: "regional", match: { methods: ["GET"], host: "^admin\\." } },
        app,
      ],
    }),
    'Cannot compile rule "admin" (rules[1]): it can never match: rule "gets" before it',
  );
});

Deno.test("parseRules(): a global or broadcast rule's own forward_cookies replace the file's list", async (t) => {
  const rules: Array<[string, Record<string, unknown>, string[][]]> = [
    ["global", { upstream: "website" }, [["csrftoken"]]],
    ["broadcast", { success: { status: "2xx" } }, [["csrftoken"], ["csrftoken"]]],
  ];
  for (const [type, fields, forwarded] of rules) {
    await t.step(type, async () => {
      const config = accepts(base({
        forward_cookies: ["sessionid"],
        rules: [
          {
            name: "own",
            type,
            match: { path: "^/own$" },
            forward_cookies: ["csrftoken"],
            ...fields,
          },
          app,
        ],
      }));
      const explained = await explainRequest({
        method: "GET",
        url: "https://app.example.com/own",
        headers: { cookie: "sessionid=a; csrftoken=b" },
      }, config);
      assert.equal(explained.rule, "own");
      // One target per region for a broadcast.
      assert.deepEqual(explained.targets.map((t) => t.forward.cookies.forwarded), forwarded);
    });
  }
});

Deno.test("parseRules(): an OCAP target origin that is not an absolute http(s) URL is refused", async (t) => {
  const ocap = (origin: string) =>
    base({ ocap: { key: "0123456789abcdef", targets: { github: { origin } } } });
  await t.step(
    "another scheme",
    () =>
      refuses(ocap("ftp://token.example.com"), "ocap.targets.github.origin:", "not an absolute"),
  );
  await t.step(
    "with a path",
    () =>
      refuses(
        ocap("https://token.example.com/oauth"),
        "ocap.targets.github.origin:",
        "origin only",
      ),
  );
});

Deno.test("pin leak: a pin header configured in upper case is still read and never forwarded", async () => {
  const config = accepts(base({ pin: { header: "X-Edge-Region" } }));
  const explained = await explainRequest({
    method: "GET",
    url: "https://app.example.com/",
    headers: { "x-edge-region": "au" },
  }, config);
  assert.equal(explained.region, "au");
  assert.equal(explained.reason, "pin header");
  const forwarded = explained.targets.flatMap((t) => t.forward.headers.forwarded);
  assert.ok(!forwarded.includes("x-edge-region"), `forwarded: ${forwarded.join(", ")}`);
});

Deno.test("parseRules(): a non-ASCII character in a header regex is refused, naming the rule and field", async (t) => {
  await t.step("match.headers", () =>
    refuses(
      base({
        rules: [{ name: "zh", type: "regional", match: { headers: { "x-city": "^Zürich$" } } }],
      }),
      'Cannot compile rule "zh" (rules[0]): match.headers.x-city: header values are matched octet by octet',
      "\\xC3\\xBC",
    ));
  await t.step("success.headers", () =>
    refuses(
      base({
        rules: [
          {
            name: "login",
            type: "broadcast",
            match: { path: "^/login$" },
            success: { headers: { "x-user": "^José" } },
          },
          app,
        ],
      }),
      'Cannot compile rule "login" (rules[0]): success.headers.x-user: header values are matched octet by octet',
    ));
});

Deno.test("header spoofing: a match.headers name written in upper case still checks the header's underscore copy", async () => {
  const config = accepts(base({
    rules: [
      { name: "acme", type: "regional", match: { headers: { "X-Tenant": "^acme$" } } },
      app,
    ],
  }));
  const only = await explainRequest({
    method: "GET",
    url: "https://app.example.com/",
    headers: { "x-tenant": "acme" },
  }, config);
  assert.equal(only.rule, "acme");
  // CGI, WSGI and Rack servers read x_tenant as the same header: the app may see "evil".
  const spoofed = await explainRequest({
    method: "GET",
    url: "https://app.example.com/",
    headers: { "x-tenant": "acme", "x_tenant": "evil" },
  }, config);
  assert.equal(spoofed.rule, "app");
});

Deno.test('parseRules(): match.methods in lower case matches the request\'s method ("in any case")', async () => {
  const config = accepts(base({
    rules: [{ name: "posts", type: "regional", match: { methods: ["post"], path: "^/x$" } }, app],
  }));
  const explained = await explainRequest(
    { method: "POST", url: "https://app.example.com/x", body: "" },
    config,
  );
  assert.equal(explained.rule, "posts");
});

Deno.test("parseRules(): a non-ASCII match.host is refused (clients send punycode)", () => {
  refuses(
    base({
      rules: [{ name: "shop", type: "regional", match: { host: "^bücher\\.example$" } }, app],
    }),
    'Cannot compile rule "shop" (rules[0]): match.host: hosts are matched as clients send them, in punycode',
  );
});

Deno.test("shell reference after a regex anchor: ^$NAME$ in pin_on.headers or match.body.regex is refused", async (t) => {
  const refusesReference = (file: unknown, at: string) =>
    assert.throws(
      () => accepts(file),
      (error: unknown) => {
        assert.ok(error instanceof ReferenceError, `expected ReferenceError, got ${error}`);
        assert.ok(error.message.includes(`"$SWITCH_TOKEN" at ${at}`), error.message);
        assert.ok(error.message.includes("(write ${SWITCH_TOKEN})"), error.message);
        return true;
      },
    );
  await t.step("pin_on.headers", () =>
    refusesReference(
      base({
        rules: [
          {
            name: "switch",
            type: "regional",
            match: { path: "^/switch/(?<region>[a-z]+)$" },
            region_from: { path_group: "region" },
            pin_on: { headers: { "x-switched": "^$SWITCH_TOKEN$" } },
          },
          app,
        ],
      }),
      "rules[0].pin_on.headers.x-switched",
    ));
  await t.step("match.body.regex", () =>
    refusesReference(
      base({
        rules: [
          {
            name: "hook",
            type: "regional",
            match: { methods: ["POST"], body: { regex: "^$SWITCH_TOKEN$" } },
          },
          app,
        ],
      }),
      "rules[0].match.body.regex",
    ));
});

Deno.test("parseRules(): an empty match.body (no json, form or regex) is refused, not a catch-all body", () => {
  refuses(
    base({
      rules: [{ name: "hook", type: "regional", match: { path: "^/hook$", body: {} } }, app],
    }),
    'Cannot compile rule "hook" (rules[0]): match.body needs exactly one of json, form or regex, got 0',
  );
});

Deno.test("parseRules(): an empty match.methods list is refused (the rule could never match)", () => {
  refuses(
    base({ rules: [{ name: "none", type: "regional", match: { methods: [] } }, app] }),
    'Cannot compile rule "none" (rules[0]): match.methods:',
  );
});

Deno.test("parseRules(): a redirect without a status redirects with 302 (the documented default)", async () => {
  const config = accepts(base({
    rules: [
      {
        name: "old-help",
        type: "global",
        match: { path: "^/help/(.*)$" },
        redirect: { location: "https://help.example.com/$1" },
      },
      app,
    ],
  }));
  const explained = await explainRequest(
    { method: "GET", url: "https://app.example.com/help/x" },
    config,
  );
  assert.equal(explained.location, "https://help.example.com/x");
  assert.equal(explained.status, 302);
});

Deno.test("parseRules(): allow_multiple_success defaults to false (several successes are ambiguous)", () => {
  const config = accepts(base({
    rules: [
      {
        name: "login",
        type: "broadcast",
        match: { path: "^/login$" },
        success: { status: "2xx" },
      },
      app,
    ],
  }));
  const login = config.rules[0];
  assert.equal(login.type, "broadcast");
  assert.equal(login.type === "broadcast" && login.allowMultipleSuccess, false);
});

Deno.test("parseRules(): a geo.countries code in lower case is refused (countries are read upper-cased)", () => {
  refuses(
    base({ geo: { header: "cf-ipcountry", countries: { au: "au" } } }),
    "Invalid rules: geo.countries.au:",
  );
});

Deno.test("parseRules(): a rule after a methods-only rule of other methods is accepted (not shadowed)", () => {
  const config = accepts(base({
    rules: [
      { name: "posts", type: "regional", match: { methods: ["POST"] } },
      { name: "pages", type: "regional", match: { methods: ["GET", "POST"], path: "^/x$" } },
      app,
    ],
  }));
  assert.deepEqual(config.rules.map((r) => r.name), ["posts", "pages", "app"]);
});

Deno.test("parseRules(): pin.max_age_seconds over 400 days is refused, and defaults to one year", async (t) => {
  await t.step(
    "over 400 days",
    () =>
      refuses(
        base({ pin: { max_age_seconds: 34_560_001 } }),
        "Invalid rules: pin.max_age_seconds:",
      ),
  );
  await t.step("a pin section without it", () => {
    const config = accepts(base({ pin: { header: "x-region" } }));
    assert.equal(config.pin.maxAgeSeconds, 31_536_000);
    assert.equal(config.pin.cookie, "__Host-vestibule-region");
    assert.equal(config.pin.secure, true);
  });
  await t.step("no pin section", () => {
    const config = accepts(base());
    assert.equal(config.pin.maxAgeSeconds, 31_536_000);
  });
});

Deno.test("parseRules(): an empty rule table is refused (no request could be routed)", () => {
  refuses(base({ rules: [] }), "Invalid rules: rules:");
});

Deno.test("parseRules(): unknown keys (typos) in a region or a global rule are refused, naming the field", async (t) => {
  await t.step("a region's timeout instead of timeout_ms", () =>
    refuses(
      base({
        regions: {
          au: { origin: "http://au.internal", timeout: 60_000 },
          us: { origin: "http://us.internal" },
        },
      }),
      "Invalid rules: regions.au:",
      '"timeout"',
    ));
  await t.step("a global rule's status beside its redirect", () =>
    refuses(
      base({
        rules: [
          {
            name: "old-help",
            type: "global",
            match: { path: "^/help$" },
            redirect: { location: "https://help.example.com/" },
            status: 301,
          },
          app,
        ],
      }),
      'Cannot compile rule "old-help" (rules[0]):',
      '"status"',
    ));
});

Deno.test("parseRules(): a json body matcher integer beyond 2^53 - 1 is refused (it would match other integers)", () => {
  refuses(
    base({
      rules: [
        { name: "acct", type: "regional", match: { body: { json: { id: 12345678901234567890 } } } },
        app,
      ],
    }),
    'Cannot compile rule "acct" (rules[0]): match.body.json.id: an integer beyond 2^53 - 1',
  );
});

Deno.test("parseRules(): a success status code outside 100-599 is refused (no answer has it)", () => {
  refuses(
    base({
      rules: [
        {
          name: "login",
          type: "broadcast",
          match: { path: "^/login$" },
          success: { status: [700] },
        },
        app,
      ],
    }),
    'Cannot compile rule "login" (rules[0]): success.status',
  );
});

Deno.test("parseRules(): a negative trusted_proxy_hops or a region id over 16 characters is refused", async (t) => {
  await t.step(
    "trusted_proxy_hops: -1",
    () => refuses(base({ trusted_proxy_hops: -1 }), "Invalid rules: trusted_proxy_hops:"),
  );
  await t.step("a 17-character region id", () =>
    refuses(
      base({
        regions: {
          "australia-sydney1": { origin: "http://au.internal" },
          us: { origin: "http://us.internal" },
        },
      }),
      "Invalid rules: regions.australia-sydney1:",
    ));
});

/** The rules `list` compiled with one region; throws as start-up would. */
const compiled = (list: unknown[]) => accepts({ ...base(), rules: list });

Deno.test("a path regex with an escaped backslash before an optional ? is not refused as a query", () => {
  // `^/x\\?$`: an optional literal backslash, not `\?` (a literal ?): no query is asked for.
  assert.doesNotThrow(() =>
    compiled([{ name: "x", type: "regional", match: { path: "^/x\\\\?$" } }, {
      name: "app",
      type: "regional",
    }])
  );
  // While a real `\?` is still refused.
  assert.throws(
    () => compiled([{ name: "x", type: "regional", match: { path: "^/x\\?a=1$" } }]),
    (e: Error) => e instanceof RulesError && /matched without their query/.test(e.message),
  );
});

Deno.test("redirect locations: a backslash after the scheme is a host; DEL is refused naming the rule and field", () => {
  const redirectTo = (location: string) =>
    accepts(
      base({
        rules: [helpRedirect({ redirect: { location } }), { name: "app", type: "regional" }],
      }),
    );
  // Browsers read `https:\\host` as `https://host` (WHATWG URL): the host is written, not a path.
  assert.doesNotThrow(() => redirectTo("https:\\\\help.example.com/"));
  assert.throws(
    () => redirectTo("https:help.example.com/"),
    /redirect\.location: write \/\/ after the scheme/,
  );
  assert.throws(
    () => redirectTo("/help\u007f"),
    /rule "help" \(rules\[0\]\): redirect\.location: write it in ASCII/,
  );
});

Deno.test("a path regex with // written with escaped slashes is refused as // is", () => {
  // `\/` is the JavaScript habit for `/`: `^/api\/\/v1` can never match a merged path either.
  assert.throws(
    () =>
      compiled([{ name: "x", type: "regional", match: { path: "^/api\\/\\/v1" } }, {
        name: "app",
        type: "regional",
      }]),
    (e: Error) =>
      /rule "x" \(rules\[0\]\): match\.path: paths are matched with runs of \/ merged/.test(
        e.message,
      ),
  );
});

Deno.test("a bad region name is named in the error: only a key under headers is hidden", () => {
  assert.throws(
    () =>
      parseRules(
        JSON.stringify({
          regions: { "EU West": { origin: "http://eu.test" } },
          default_region: "eu",
          rules: [{ name: "app", type: "regional" }],
        }),
        { env: () => undefined },
      ),
    (e: Error) => /regions\.EU West: /.test(e.message),
  );
});
