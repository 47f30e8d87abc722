import assert from "node:assert/strict";
import { RulesError } from "./compile_rules.ts";
import { parseRules } from "./load_rules.ts";
import { findRule, type RequestFacts } from "./match_rule.ts";
import { BufferedBody } from "./request_body.ts";

function rules(list: unknown[]) {
  return parseRules(
    JSON.stringify({
      regions: { us: { origin: "http://us.test" } },
      default_region: "us",
      rules: list,
    }),
    { env: () => undefined },
  ).rules;
}

async function winner(table: ReturnType<typeof rules>, init: RequestInit) {
  const url = new URL("http://app.test/");
  const req = new Request(url, init);
  const facts: RequestFacts = {
    method: req.method,
    hostname: url.hostname,
    path: url.pathname,
    searchParams: url.searchParams,
    headers: req.headers,
  };
  return (await findRule(table, facts, new BufferedBody(req, 1 << 20)))?.rule.name;
}

/** `action=login` → rule "login"; anything else → "app". */
const loginForm = () =>
  rules([
    { name: "login", type: "regional", match: { body: { form: { action: "login" } } } },
    { name: "app", type: "regional" },
  ]);

const disposition = (name: string) => `Content-Disposition: form-data; name="${name}"\r\n\r\n`;

Deno.test("rule confusion: multipart framing that Django or PHP reads as more parts than busboy", async (t) => {
  // Django's BoundaryIter._find_boundary() splits at `--boundary` wherever it occurs (backing
  // over a CR/LF only if there is one), has no notion of a close delimiter, and parses every
  // piece, the epilogue included, as a part when it holds a header block. busboy (RFC 2046)
  // needs CRLF before a delimiter and ignores what follows `--boundary--`. In each body Django
  // (or PHP) reads action=["login", "evil"], and `request.POST["action"]` is "evil" (the last).
  const table = loginForm();
  const send = (body: string) =>
    winner(table, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=B" },
      body,
    });
  await t.step("a delimiter without CRLF before it", async () => {
    const body = `--B\r\n${disposition("action")}login\r\n` +
      `--B\r\n${disposition("note")}hi--B\r\n${disposition("action")}evil\r\n--B--\r\n`;
    assert.equal(await send(body), "app");
  });
  await t.step("a part after the close delimiter", async () => {
    const body = `--B\r\n${disposition("action")}login\r\n--B--\r\n${disposition("action")}evil`;
    assert.equal(await send(body), "app");
  });
  await t.step("a delimiter and headers ending in LF alone (PHP's rfc1867 parser)", async () => {
    // PHP looks for "\n--boundary" and reads LF-terminated lines: a part of its own to PHP.
    const body = `--B\r\n${disposition("action")}login\r\n` +
      `--B\r\n${disposition("note")}hi\n--B\nContent-Disposition: form-data; name="action"\n\n` +
      "evil\r\n--B--\r\n";
    assert.equal(await send(body), "app");
  });
  await t.step("a part that names itself twice (Django keeps the last header)", async () => {
    const body = `--B\r\n${disposition("action")}login\r\n` +
      `--B\r\nContent-Disposition: form-data; name="note"\r\n${disposition("action")}evil\r\n` +
      "--B--\r\n";
    assert.equal(await send(body), "app");
  });
});

Deno.test("rule confusion: the multipart boundary busboy picks is not the one the app picks", async (t) => {
  // One body framed two ways: under A it is action=login, under B the last action is "evil".
  const body = `--A\r\n${disposition("action")}login\r\n--A--\r\n` +
    `--B\r\n${disposition("action")}evil\r\n--B--\r\n`;
  const send = (type: string) =>
    winner(loginForm(), { method: "POST", headers: { "content-type": type }, body });
  await t.step("named twice: Django's parse_header_parameters() keeps the last", async () => {
    assert.equal(await send("multipart/form-data; boundary=A; boundary=B"), "app");
  });
  await t.step("PHP takes the first text `boundary`, even inside another name", async () => {
    // rfc1867.c: strstr(content_type, "boundary"), then up to the next `,` or `;`.
    assert.equal(await send("multipart/form-data; x-boundary=B; boundary=A"), "app");
  });
});

Deno.test("rule confusion: form and json matchers read UTF-8 whatever charset the Content-Type declares", async (t) => {
  await t.step(
    "multipart: Django decodes names and values with the request's charset",
    async () => {
      // MultiPartParser decodes every field name and value with `request.encoding`, taken from
      // `Content-Type: …; charset=` (any Python codec; `utf-7` is one). So the name `+AGE-ction`
      // is Django's `action`, and `request.POST["action"]` is "evil".
      const body = `--B\r\n${disposition("action")}login\r\n` +
        `--B\r\n${disposition("+AGE-ction")}evil\r\n--B--\r\n`;
      const got = await winner(loginForm(), {
        method: "POST",
        headers: { "content-type": "multipart/form-data; boundary=B; charset=utf-7" },
        body,
      });
      assert.equal(got, "app");
    },
  );
  await t.step("json: Django REST framework's JSONParser decodes with it too", async () => {
    // DRF: parser_context["encoding"] = request.encoding; json.load(codecs.getreader(it)(…)).
    // In UTF-7, `+ACIALAAi-` is `","` and `+ACIAOgAi-` is `":"`: DRF reads
    // {"operationName":"Signup","pad":"","operationName":"Other"}, the last key winning.
    const table = rules([
      {
        name: "signup",
        type: "broadcast",
        match: { body: { json: { operationName: "Signup" } } },
        success: { status: "2xx" },
      },
      { name: "app", type: "regional" },
    ]);
    const got = await winner(table, {
      method: "POST",
      headers: { "content-type": "application/json; charset=utf-7" },
      body: '{"operationName":"Signup","pad":"+ACIALAAi-operationName+ACIAOgAi-Other"}',
    });
    assert.equal(got, "app");
  });
});

Deno.test("wrong routing: an integer beyond 2**53 in a json matcher or success rule is refused at start-up", async (t) => {
  // Python, Ruby, Go (int64) and PHP read 1234567890123456789 and …800 as two accounts;
  // JSON.parse rounds both to one number, so the rule for one account took the other's requests.
  const refused = (rule: unknown, field: string) =>
    assert.throws(
      () => rules([rule, { name: "app", type: "regional" }]),
      (error: unknown) =>
        error instanceof RulesError && error.message.includes('rule "vip" (rules[0])') &&
        error.message.includes(field) && error.message.includes("2^53 - 1"),
    );
  await t.step("match.body.json", () =>
    refused({
      name: "vip",
      type: "regional",
      match: { body: { json: { account: { ids: [1, 1234567890123456789] } } } },
    }, "match.body.json.account.ids.1"));
  await t.step("success.json.equals", () =>
    refused({
      name: "vip",
      type: "broadcast",
      success: { json: { path: "id", equals: -9007199254740992 } },
    }, "success.json.equals"));
  await t.step("2**53 - 1 and a fraction are kept", () => {
    rules([{
      name: "vip",
      type: "regional",
      match: { body: { json: { id: 9007199254740991, ratio: 0.1 } } },
    }, { name: "app", type: "regional" }]);
  });
});

Deno.test("what real clients send still matches: a browser's multipart, utf-8 JSON, PHP-style names", async (t) => {
  const table = loginForm();
  const body = `--B\r\n${disposition("action")}login\r\n` +
    `--B\r\nContent-Disposition: form-data; name="user[email]"\r\n\r\na@example.com\r\n` +
    `--B\r\nContent-Disposition: form-data; name="avatar"; filename="a.png"\r\n` +
    `Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--B--\r\n`;
  for (const type of ["multipart/form-data; boundary=B", 'multipart/form-data; boundary="B"']) {
    await t.step(type, async () => {
      const got = await winner(table, { method: "POST", headers: { "content-type": type }, body });
      assert.equal(got, "login");
    });
  }
  await t.step("urlencoded with UTF-8 named", async () => {
    const got = await winner(table, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded; charset=UTF-8" },
      body: "action=login&user%5Bemail%5D=a%40example.com",
    });
    assert.equal(got, "login");
  });
  await t.step("json with UTF-8 named", async () => {
    const json = rules([
      { name: "signup", type: "regional", match: { body: { json: { op: "Signup" } } } },
      { name: "app", type: "regional" },
    ]);
    const got = await winner(json, {
      method: "POST",
      headers: { "content-type": "application/json; charset=utf-8" },
      body: '{"op":"Signup"}',
    });
    assert.equal(got, "signup");
  });
});

Deno.test("rule confusion: form field names as PHP registers them (leading spaces dropped, `[` opens an array)", async (t) => {
  // php_register_variable_ex(): leading spaces are skipped and `name[…]` is the array `name`,
  // which replaces an earlier plain `name`; the last registration wins. So in each body below
  // PHP's (and Laravel's) `$_POST['action']` is "evil" or ["evil"], never "login".
  const table = loginForm();
  const urlencoded = (body: string) =>
    winner(table, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body,
    });
  await t.step("urlencoded, leading space", async () => {
    assert.equal(await urlencoded("action=login&+action=evil"), "app");
  });
  await t.step("urlencoded, array spelling", async () => {
    assert.equal(await urlencoded("action=login&action%5B%5D=evil"), "app");
  });
  await t.step("multipart, leading space", async () => {
    const body = `--B\r\n${disposition("action")}login\r\n` +
      `--B\r\n${disposition(" action")}evil\r\n--B--\r\n`;
    const got = await winner(table, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=B" },
      body,
    });
    assert.equal(got, "app");
  });
});
