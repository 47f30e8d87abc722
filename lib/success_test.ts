import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { brotliCompressSync } from "node:zlib";
import type { SuccessRule } from "./compile_rules.ts";
import {
  checkSuccess,
  cookieDate,
  lookupPath,
  matchesWithoutBody,
  setsLiveCookie,
} from "./success.ts";

const NOW = Date.parse("2026-11-22T00:00:00Z");
const opts = { now: NOW, bodyLimit: 1 << 20, deadline: Number.POSITIVE_INFINITY };

Deno.test("setsLiveCookie() wants the name, a value and no past expiry", () => {
  assert.equal(setsLiveCookie(["sessionid=abc; Path=/"], "sessionid", NOW), true);
  assert.equal(setsLiveCookie(["sessionid=; Path=/"], "sessionid", NOW), false);
  assert.equal(setsLiveCookie(['sessionid=""; Path=/'], "sessionid", NOW), false);
  assert.equal(setsLiveCookie(["sessionid=abc; Max-Age=0"], "sessionid", NOW), false);
  assert.equal(
    setsLiveCookie(["sessionid=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT"], "sessionid", NOW),
    false,
  );
  assert.equal(
    setsLiveCookie(["sessionid=abc; Expires=Thu, 01 Jan 2099 00:00:00 GMT"], "sessionid", NOW),
    true,
  );
  assert.equal(setsLiveCookie(["xsessionid=abc"], "sessionid", NOW), false);
  assert.equal(setsLiveCookie(["csrftoken=a", "sessionid=b"], "sessionid", NOW), true);
  // RFC 6265 §5.3 step 3: Max-Age wins over Expires.
  assert.equal(
    setsLiveCookie(
      ["sessionid=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60"],
      "sessionid",
      NOW,
    ),
    true,
  );
});

Deno.test("false login: setsLiveCookie() ignores a cookie the browser refuses to store", () => {
  const page = { host: "app.example.com", path: "/accounts/login/" };
  const kept = (line: string, name = "sessionid") => setsLiveCookie([line], name, NOW, page);
  // RFC 6265 §5.3 step 6: the Domain must domain-match the page's host.
  assert.equal(kept("sessionid=x; Domain=au.example.com; Path=/"), false);
  assert.equal(kept("sessionid=x; Domain=ample.com; Path=/"), false);
  assert.equal(kept("sessionid=x; Domain=example.com; Path=/"), true);
  assert.equal(kept("sessionid=x; Domain=.App.Example.com; Path=/"), true);
  assert.equal(
    setsLiveCookie(["s=x; Domain=0.0.1"], "s", NOW, { host: "127.0.0.1", path: "/" }),
    false,
  );
  // RFC 6265bis §4.1.3 prefixes, in any letter case.
  assert.equal(kept("__Host-s=x; Path=/", "__Host-s"), false);
  assert.equal(kept("__Host-s=x; Path=/; Secure; Domain=app.example.com", "__Host-s"), false);
  assert.equal(kept("__Host-s=x; Path=/accounts; Secure", "__Host-s"), false);
  assert.equal(kept("__Host-s=x; Path=/; Secure", "__Host-s"), true);
  // The last Path attribute wins, also an empty one (Chrome reads "", Firefox the default path).
  assert.equal(kept("__Host-s=x; Secure; Path=/; Path=", "__Host-s"), false);
  assert.equal(kept("__Host-s=x; Secure; Path=/; Path=accounts", "__Host-s"), false);
  // RFC 6265bis §5.7 step 3: name and value over 4096 octets together are not stored.
  assert.equal(kept(`sessionid=${"v".repeat(4088)}`), false);
  assert.equal(kept(`sessionid=${"v".repeat(4087)}`), true);
  // Header text is one character per octet: é sent in UTF-8 reads "Ã©", two octets.
  assert.equal(kept(`sessionid=${"Ã©".repeat(2044)}`), false, "counted in octets");
  assert.equal(kept(`sessionid=${"Ã©".repeat(2043)}${"v".repeat(1)}`), true, "counted once");
  // à is C3 A0: its last octet is part of the value, as browsers keep it, not a space to trim.
  assert.equal(kept(`sessionid=${"v".repeat(4086)}Ã\xA0`), false, "an A0 octet counts");
  assert.equal(kept(`sessionid=${"v".repeat(4085)}Ã\xA0`), true);
  // The Path=/ attribute itself: a default path of "/" (a page at /login) is not enough.
  assert.equal(
    setsLiveCookie(["__Host-s=x; Secure"], "__Host-s", NOW, { host: "app.test", path: "/login" }),
    false,
  );
  assert.equal(kept("__host-s=x; Path=/", "__host-s"), false);
  assert.equal(kept("__Secure-s=x; Path=/", "__Secure-s"), false);
  assert.equal(kept("__Secure-s=x; Path=/; Secure", "__Secure-s"), true);
  // A refused line does not replace the cookie an earlier line set.
  assert.equal(
    setsLiveCookie(
      ["sessionid=x; Path=/", "sessionid=; Max-Age=0; Path=/; Domain=elsewhere.test"],
      "sessionid",
      NOW,
      page,
    ),
    true,
  );
});

Deno.test("setsLiveCookie() judges the cookie a browser keeps: the last line for a name, path and domain wins", () => {
  const cleared = ["sessionid=anon; Path=/", "sessionid=; Max-Age=0; Path=/"];
  assert.equal(setsLiveCookie(cleared, "sessionid", NOW), false);
  assert.equal(setsLiveCookie(cleared.toReversed(), "sessionid", NOW), true);
  // Another path is another cookie: clearing /admin's leaves the root one.
  assert.equal(
    setsLiveCookie(["sessionid=s; Path=/", "sessionid=; Max-Age=0; Path=/admin"], "sessionid", NOW),
    true,
  );
  // Without Path, a cookie set in answer to /login has the default path "/" (RFC 6265 §5.1.4);
  // in answer to /accounts/login it is "/accounts", another cookie.
  const clearedWithoutPath = ["sessionid=anon; Path=/", "sessionid=; Max-Age=0"];
  const at = (host: string, path: string) => ({ host, path });
  assert.equal(
    setsLiveCookie(clearedWithoutPath, "sessionid", NOW, at("app.test", "/login")),
    false,
  );
  assert.equal(
    setsLiveCookie(clearedWithoutPath, "sessionid", NOW, at("app.test", "/accounts/login")),
    true,
  );
  // A host-only cookie and a Domain=<that host> one are two cookies in browsers (RFC 6265bis):
  // clearing one leaves the other, in either order.
  const domainThenHostOnly = [
    "sessionid=s; Domain=app.test; Path=/",
    "sessionid=; Max-Age=0; Path=/",
  ];
  assert.equal(setsLiveCookie(domainThenHostOnly, "sessionid", NOW, at("app.test", "/")), true);
  const hostOnlyThenDomain = [
    "sessionid=owner; Path=/; HttpOnly",
    "sessionid=; Max-Age=0; Path=/; Domain=app.test",
  ];
  assert.equal(setsLiveCookie(hostOnlyThenDomain, "sessionid", NOW, at("app.test", "/")), true);
  // An empty last Path stands for the default path: clearing "/" leaves /accounts/login's cookie.
  assert.equal(
    setsLiveCookie(
      ["sessionid=owner; Path=/; Path=", "sessionid=; Max-Age=0; Path=/"],
      "sessionid",
      NOW,
      at("app.test", "/accounts/login/"),
    ),
    true,
  );
  // On an IP address host, Domain=<it> is host-only: the same cookie.
  assert.equal(
    setsLiveCookie(
      ["s=x; Path=/", "s=; Max-Age=0; Path=/; Domain=127.0.0.1"],
      "s",
      NOW,
      at("127.0.0.1", "/"),
    ),
    false,
  );
  assert.equal(
    setsLiveCookie(
      ["sessionid=s; Domain=example.test; Path=/", "sessionid=; Max-Age=0; Path=/"],
      "sessionid",
      NOW,
      at("app.example.test", "/"),
    ),
    true,
    "the parent domain's cookie is another cookie than the host's",
  );
});

Deno.test("cookieDate() parses Expires as browsers do (RFC 6265 §5.1.1)", () => {
  const utc = (text: string) => Date.parse(text);
  assert.equal(cookieDate("Thu, 01 Jan 2099 00:00:00 GMT"), utc("2099-01-01T00:00:00Z"));
  assert.equal(cookieDate("Thursday, 01-Jan-60 00:00:00 GMT"), utc("2060-01-01T00:00:00Z"));
  assert.equal(cookieDate("Thu, 01-Jan-70 00:00:00 GMT"), utc("1970-01-01T00:00:00Z"));
  assert.equal(cookieDate("Thu Jan  1 00:00:01 1970"), utc("1970-01-01T00:00:01Z"), "asctime");
  assert.equal(cookieDate("Thu, 01 Jan 1970 00:00:01 CET"), utc("1970-01-01T00:00:01Z"));
  for (
    const bad of [
      "",
      "tomorrow",
      "Thu, 31 Feb 2099 00:00:00 GMT",
      "01 Jan 1600 00:00:00",
      "01 Jan 2099 00:60:00",
      "01 Jan 2099 24:00:00",
      "32 Jan 2099 00:00:00",
    ]
  ) {
    assert.ok(Number.isNaN(cookieDate(bad)), bad);
  }
});

Deno.test("lookupPath() follows dotted paths into objects and arrays", () => {
  const doc = { data: { signup: { ok: true } }, errors: [{ message: "x" }], n: null };
  assert.deepEqual(lookupPath(doc, ["data", "signup", "ok"]), { present: true, value: true });
  assert.deepEqual(lookupPath(doc, ["errors", "0", "message"]), { present: true, value: "x" });
  assert.deepEqual(lookupPath(doc, ["n"]), { present: true, value: null });
  assert.deepEqual(lookupPath(doc, ["n", "x"]), { present: false });
  assert.deepEqual(lookupPath(doc, ["data", "nope"]), { present: false });
  assert.deepEqual(lookupPath("text", ["length"]), { present: false });
});

type JsonRule = NonNullable<SuccessRule["json"]>;

Deno.test("checkSuccess() holds only when every listed condition holds (property)", async () => {
  // Rule and answer are drawn together from small value sets, so that each condition holds about
  // half the time and a full success is common: a verdict that is always false would fail here.
  const value = fc.constantFrom<unknown>(true, 1, "true", [], null, { a: 1 });
  const condition = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 2 });
  let successes = 0;
  let jsonSuccesses = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        status: fc.constantFrom(200, 201, 204, 302, 401, 503),
        statusRule: condition(fc.oneof(
          fc.constantFrom(2, 3, 4, 5).map((c) => ({ class: c })),
          fc.subarray([200, 204, 302, 503], { minLength: 1 }).map((l) => new Set(l)),
        )),
        cookieRule: fc.boolean(),
        setsCookie: fc.constantFrom("live", "expired", "none"),
        headerRule: fc.boolean(),
        header: fc.constantFrom("ok", "no", undefined),
        jsonRule: condition(fc.oneof(
          value.map((equals): JsonRule => ({ path: ["ok"], hasEquals: true, equals })),
          fc.boolean().map((exists): JsonRule => ({ path: ["ok"], hasEquals: false, exists })),
        )),
        // "same": `ok` is what an equals rule wants; "other": any of the values.
        body: fc.constantFrom("same", "other", "{}", "not json"),
        other: value,
      }),
      async (c) => {
        const nullBody = c.status === 204;
        const headers = new Headers({ "content-type": "application/json" });
        if (c.setsCookie === "live") headers.append("set-cookie", "sessionid=v; Path=/");
        if (c.setsCookie === "expired") headers.append("set-cookie", "sessionid=v; Max-Age=0");
        if (c.header !== undefined) headers.set("x-login", c.header);
        const rule: SuccessRule = {};
        if (c.statusRule) rule.status = c.statusRule;
        if (c.cookieRule) rule.setCookie = "sessionid";
        if (c.headerRule) rule.headers = [["x-login", /^ok$/]];
        if (c.jsonRule) rule.json = c.jsonRule;
        const want = c.jsonRule?.hasEquals ? c.jsonRule.equals : true;
        const body = c.body === "same"
          ? JSON.stringify({ ok: want })
          : c.body === "other"
          ? JSON.stringify({ ok: c.other })
          : c.body;
        const response = new Response(nullBody ? null : body, { status: c.status, headers });
        const verdict = await checkSuccess(rule, response, opts);

        let parsed: unknown;
        let isJson = !nullBody;
        try {
          parsed = nullBody ? undefined : JSON.parse(body);
        } catch {
          isJson = false;
        }
        const present = typeof parsed === "object" && parsed !== null && "ok" in parsed;
        const got = present ? (parsed as { ok: unknown }).ok : undefined;
        const expected = (!c.statusRule ||
          (c.statusRule instanceof Set
            ? c.statusRule.has(c.status)
            : Math.floor(c.status / 100) === c.statusRule.class)) &&
          (!c.cookieRule || c.setsCookie === "live") &&
          (!c.headerRule || c.header === "ok") &&
          (!c.jsonRule || isJson &&
              (c.jsonRule.hasEquals
                ? present && isDeepStrictEqual(got, c.jsonRule.equals)
                : present === c.jsonRule.exists));
        assert.equal(
          verdict.success,
          expected,
          JSON.stringify({
            ...c,
            statusRule: [...(c.statusRule instanceof Set ? c.statusRule : [])],
          }),
        );
        if (expected) successes++;
        if (expected && c.jsonRule?.hasEquals) jsonSuccesses++;
        // Whatever the verdict, the client can still read the body.
        if (!nullBody) assert.equal(await verdict.response.text(), body);
        else await verdict.response.body?.cancel();
      },
    ),
    { numRuns: 500 },
  );
  // About 100 and 10 are expected; "> 3" by json failed once in 40 runs by chance alone.
  assert.ok(
    successes > 25 && jsonSuccesses > 0,
    `${successes} successes, ${jsonSuccesses} by json`,
  );
});

Deno.test("checkSuccess() with a json rule on a non-JSON body is no success, and the body survives", async () => {
  const rule: SuccessRule = { json: { path: ["errors"], hasEquals: true, equals: [] } };
  const verdict = await checkSuccess(rule, new Response("<html>oops</html>"), opts);
  assert.equal(verdict.success, false);
  assert.equal(await verdict.response.text(), "<html>oops</html>");
});

Deno.test("checkSuccess() exists: true/false looks for the path, not its value", async () => {
  const exists: SuccessRule = { json: { path: ["data", "token"], hasEquals: false, exists: true } };
  const absent: SuccessRule = {
    json: { path: ["data", "token"], hasEquals: false, exists: false },
  };
  const body = '{"data":{"token":null}}';
  assert.equal((await checkSuccess(exists, new Response(body), opts)).success, true);
  assert.equal((await checkSuccess(absent, new Response(body), opts)).success, false);
  assert.equal((await checkSuccess(absent, new Response("{}"), opts)).success, true);
});

Deno.test("checkSuccess() with a json rule on a 204 is no success and does not throw", async () => {
  const rule: SuccessRule = { json: { path: ["ok"], hasEquals: true, equals: true } };
  const verdict = await checkSuccess(rule, new Response(null, { status: 204 }), opts);
  assert.equal(verdict.success, false);
  assert.equal(verdict.response.status, 204);
  assert.equal(verdict.response.body, null);
});

Deno.test("false login: setsLiveCookie() ignores a SameSite=None cookie without Secure, which Chrome refuses", () => {
  assert.equal(setsLiveCookie(["sessionid=abc; Path=/; SameSite=None"], "sessionid", NOW), false);
  assert.equal(
    setsLiveCookie(["sessionid=abc; Path=/; SameSite=None; Secure"], "sessionid", NOW),
    true,
  );
  // The last SameSite wins.
  assert.equal(
    setsLiveCookie(["sessionid=abc; SameSite=Lax; SameSite=None"], "sessionid", NOW),
    false,
  );
});

Deno.test("false success: lookupPath() finds only a JSON value's own keys, not what every object inherits", () => {
  for (const key of ["toString", "constructor", "hasOwnProperty", "__proto__"]) {
    assert.deepEqual(lookupPath({}, [key]), { present: false }, key);
    assert.deepEqual(lookupPath({ data: {} }, ["data", key]), { present: false }, key);
  }
});

Deno.test("false login: cookieDate() reads the Expires forms RFC 6265 §5.1.1 allows, and no others", () => {
  const utc = (text: string) => Date.parse(text);
  // Two-digit years: 70-99 are 19xx, 00-69 are 20xx, so a logout's "-99" lies in the past.
  assert.equal(cookieDate("Fri, 01-Jan-99 00:00:00 GMT"), utc("1999-01-01T00:00:00Z"));
  assert.equal(cookieDate("Tue, 01-Jan-69 00:00:00 GMT"), utc("2069-01-01T00:00:00Z"));
  // A month token is its first three letters and anything after them.
  assert.equal(cookieDate("Thu, 01 January 2099 00:00:00 GMT"), utc("2099-01-01T00:00:00Z"));
  // The first time token counts; a later one is ignored.
  assert.equal(cookieDate("01 Jan 2099 01:02:03 04:05:06"), utc("2099-01-01T01:02:03Z"));
  for (const bad of ["01 Jan 2099 00:00:60", "01 Jan 9 00:00:00", "01 Jan 2099 00:00:001"]) {
    assert.ok(Number.isNaN(cookieDate(bad)), bad);
  }
});

Deno.test("false login: setsLiveCookie() counts the ways a logout answer clears a cookie", () => {
  const scope = { host: "shop.example", path: "/logout" };
  const clears = (line: string) =>
    setsLiveCookie(["sessionid=s; Path=/", line], "sessionid", NOW, scope);
  assert.equal(clears("sessionid=x; Max-Age=-1; Path=/"), false, "a negative Max-Age");
  assert.equal(clears("sessionid=x; Path=/; Expires=Fri, 01-Jan-99 00:00:00 GMT"), false);
  assert.equal(
    clears(`sessionid=x; Path=/; Expires=${new Date(NOW).toUTCString()}`),
    false,
    "an Expires of exactly now",
  );
  // A relative Path stands for the default path, here "/": the same cookie as `Path=/`.
  assert.equal(clears("sessionid=; Max-Age=0; Path=relative"), false);
  // Spaces around the name are not part of it.
  assert.equal(clears("sessionid =; Max-Age=0; Path=/"), false);
  // On an IPv6 literal host, `Domain=<it>` makes a host-only cookie, as on an IPv4 one.
  assert.equal(
    setsLiveCookie(
      ["sessionid=s", "sessionid=; Max-Age=0; Domain=[::1]"],
      "sessionid",
      NOW,
      { host: "[::1]", path: "/" },
    ),
    false,
  );
});

Deno.test("false failure: matchesWithoutBody() counts every status of a class, 2x0 to 2x9 alike", () => {
  const twoXx: SuccessRule = { status: { class: 2 } };
  const threeXx: SuccessRule = { status: { class: 3 } };
  const judged = (rule: SuccessRule, status: number) =>
    matchesWithoutBody(rule, new Response(null, { status }), NOW);
  // A class is the first digit: 250 to 299 are 2xx, 350 to 399 are 3xx, not the next class up.
  for (const status of [200, 226, 250, 299]) assert.equal(judged(twoXx, status), true, `${status}`);
  for (const status of [300, 350, 399]) {
    assert.equal(judged(twoXx, status), false, `${status}`);
    assert.equal(judged(threeXx, status), true, `${status}`);
  }
});

Deno.test("false failure: checkSuccess() judges a JSON body of exactly body_limit_bytes", async () => {
  const rule: SuccessRule = { json: { path: ["ok"], hasEquals: true, equals: true } };
  const body = '{"ok":true}';
  const answer = () =>
    new Response(body, {
      headers: { "content-type": "application/json", "content-length": String(body.length) },
    });
  const atLimit = await checkSuccess(rule, answer(), { ...opts, bodyLimit: body.length });
  assert.equal(atLimit.success, true, "a body at the limit is not over it");
  assert.equal(await atLimit.response.text(), body);
  const overLimit = await checkSuccess(rule, answer(), { ...opts, bodyLimit: body.length - 1 });
  assert.equal(overLimit.success, false);
  assert.equal(await overLimit.response.text(), body);
});

Deno.test("false success: checkSuccess() json equals a list holds only for that list, not an empty one", async () => {
  const rule: SuccessRule = {
    json: { path: ["data", "roles"], hasEquals: true, equals: ["owner"] },
  };
  const judged = async (body: unknown) =>
    (await checkSuccess(rule, Response.json({ data: { roles: body } }), opts)).success;
  assert.equal(await judged(["owner"]), true);
  assert.equal(await judged([]), false, "no roles is not the owner's");
  assert.equal(await judged(["owner", "guest"]), false);
});

Deno.test("false success: checkSuccess() json equals an object holds only with all its keys", async () => {
  const rule: SuccessRule = {
    json: { path: ["data", "signup"], hasEquals: true, equals: { ok: true, role: "owner" } },
  };
  const judged = async (signup: unknown) =>
    (await checkSuccess(rule, Response.json({ data: { signup } }), opts)).success;
  assert.equal(await judged({ ok: true, role: "owner" }), true);
  assert.equal(await judged({ ok: true }), false, "a signup without the owner role is not one");
  assert.equal(await judged({ ok: true, role: "owner", extra: 1 }), false, "equals is exact");
});

Deno.test("checkSuccess() reads a body whose Content-Encoding is in upper case (BR)", async () => {
  const rule: SuccessRule = { json: { path: ["ok"], hasEquals: true, equals: true } };
  const body = brotliCompressSync(new TextEncoder().encode('{"ok":true}'));
  const response = new Response(new Uint8Array(body), { headers: { "content-encoding": "BR" } });
  const verdict = await checkSuccess(rule, response, {
    now: NOW,
    bodyLimit: 1 << 20,
    deadline: Number.POSITIVE_INFINITY,
  });
  assert.equal(verdict.success, true);
});

Deno.test("setsLiveCookie() ignores an empty Domain attribute (RFC 6265 §5.2.3): still a login", () => {
  const scope = { host: "app.example.com", path: "/login" };
  assert.equal(setsLiveCookie(["sessionid=abc; Domain=; Path=/"], "sessionid", NOW, scope), true);
});

Deno.test("setsLiveCookie() does not read a nameless 'Set-Cookie: sessionidx' as sessionid", () => {
  assert.equal(setsLiveCookie(["sessionidx"], "sessionid", NOW), false);
});
