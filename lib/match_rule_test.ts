import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRules } from "./load_rules.ts";
import { containsSubset, findRule, type RequestFacts } from "./match_rule.ts";
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

function request(path: string, init: RequestInit & { host?: string } = {}, bodyLimit = 1024) {
  const url = new URL(`http://${init.host ?? "app.test"}${path}`);
  const req = new Request(url, init);
  const facts: RequestFacts = {
    method: req.method,
    hostname: url.hostname,
    path: url.pathname,
    searchParams: url.searchParams,
    headers: req.headers,
  };
  return { facts, body: new BufferedBody(req, bodyLimit) };
}

async function winner(
  table: ReturnType<typeof rules>,
  path: string,
  init?: RequestInit & { host?: string },
) {
  const { facts, body } = request(path, init);
  return (await findRule(table, facts, body))?.rule.name;
}

Deno.test("findRule() takes the first rule whose every condition holds", async () => {
  const table = rules([
    { name: "post-login", type: "regional", match: { methods: ["post"], path: "^/login$" } },
    { name: "admin-host", type: "regional", match: { host: "^admin\\." } },
    {
      name: "tagged",
      type: "regional",
      match: { query: { tag: "^a+$" }, headers: { "X-Beta": "^1$" } },
    },
    { name: "app", type: "regional" },
  ]);
  assert.equal(await winner(table, "/login", { method: "POST" }), "post-login");
  assert.equal(await winner(table, "/login"), "app");
  assert.equal(await winner(table, "/x", { host: "admin.app.test" }), "admin-host");
  assert.equal(await winner(table, "/x?tag=aaa", { headers: { "x-beta": "1" } }), "tagged");
  assert.equal(await winner(table, "/x?tag=aaa"), "app", "every condition must hold");
  assert.equal(await winner(table, "/x?tag=", { headers: { "x-beta": "1" } }), "app");
});

Deno.test("findRule() parameter smuggling: a repeated query parameter matches only when every value does", async () => {
  const table = rules([
    { name: "beta", type: "regional", match: { query: { beta: "^1$" } } },
    { name: "app", type: "regional" },
  ]);
  assert.equal(await winner(table, "/x?beta=1"), "beta");
  assert.equal(await winner(table, "/x?beta=1&beta=1"), "beta");
  // Django reads the last value, other frameworks the first: the rule must hold for both.
  assert.equal(await winner(table, "/x?beta=1&beta=0"), "app");
  assert.equal(await winner(table, "/x?beta=0&beta=1"), "app");
  assert.equal(await winner(table, "/x"), "app");
});

Deno.test("findRule() returns the winner (its index tells the rules tried) and the path groups", async () => {
  const table = rules([
    { name: "a", type: "regional", match: { path: "^/a$" } },
    { name: "s", type: "regional", match: { path: "^/s/(?<region>\\w+)$" } },
  ]);
  const { facts, body } = request("/s/au");
  const match = await findRule(table, facts, body);
  assert.equal(match?.rule.name, "s");
  assert.equal(match?.rule.index, 1);
  assert.equal(match?.pathMatch?.groups?.region, "au");
  assert.equal(body.consumed, false, "no rule inspects the body, so it was not read");
  const none = request("/zzz");
  assert.equal(await findRule(table, none.facts, none.body), undefined);
});

Deno.test("findRule() body matchers: json subset, form fields, regex; bad bodies do not match", async () => {
  const table = rules([
    {
      name: "json",
      type: "regional",
      match: { body: { json: { op: "Join", vars: { code: "A" } } } },
    },
    { name: "form", type: "regional", match: { body: { form: { action: "reset" } } } },
    { name: "regex", type: "regional", match: { body: { regex: "^hello" } } },
    { name: "app", type: "regional" },
  ]);
  const post = (body: BodyInit, type?: string): RequestInit => ({
    method: "POST",
    body,
    headers: type ? { "content-type": type } : undefined,
  });
  assert.equal(
    await winner(table, "/", post('{"op":"Join","vars":{"code":"A","x":1},"y":2}')),
    "json",
  );
  assert.equal(await winner(table, "/", post('{"op":"Join","vars":{"code":"B"}}')), "app");
  assert.equal(await winner(table, "/", post('{"op":"Join",')), "app");
  assert.equal(
    await winner(table, "/", post("action=reset&x=1", "application/x-www-form-urlencoded")),
    "form",
  );
  const multipart = new FormData();
  multipart.set("action", "reset");
  assert.equal(await winner(table, "/", { method: "POST", body: multipart }), "form");
  assert.equal(
    await winner(table, "/", post("--broken", "multipart/form-data; boundary=zz")),
    "app",
  );
  assert.equal(await winner(table, "/", post("hello world")), "regex");
});

/** A form rule for `action=login` before a catch-all: which one wins says how the form was read. */
const loginForm = () =>
  rules([
    { name: "login", type: "regional", match: { body: { form: { action: "login" } } } },
    { name: "app", type: "regional" },
  ]);

Deno.test("rule bypass: multipart field names are read as the app reads them, quoted ';' included", async (t) => {
  const table = loginForm();
  // One part with value "login"; what an RFC 7578 parser (Python's email, Django, busboy) reads.
  const send = (disposition: string) =>
    winner(table, "/", {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=XyZ" },
      body: `--XyZ\r\nContent-Disposition: ${disposition}\r\n\r\nlogin\r\n--XyZ--\r\n`,
    });
  const cases: Array<[string, string]> = [
    ['form-data; name="action"', "login"],
    ['form-data; name="x;name=action;"', "app"], // the field "x;name=action;"
    ['form-data; name="action"; x="; name=zzz"', "login"], // `; name=zzz` is x's value
    ['form-data; name="action"; x="; filename=y"', "login"], // a field, not a file
    ["form-data; name*=UTF-8''action", "login"], // RFC 2231
    ['form-data; NAME="action"', "login"],
    ['form-data; name="action"; filename="a.txt"', "app"], // a file is no field
  ];
  for (const [disposition, expected] of cases) {
    await t.step(disposition, async () => assert.equal(await send(disposition), expected));
  }
});

Deno.test("crash: a multipart body cut off inside a part is no match, not an uncaught error", async (t) => {
  const table = loginForm();
  const cut: Array<[string, string]> = [
    [
      "inside a file part",
      '--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nda',
    ],
    ["inside a field part", '--XyZ\r\nContent-Disposition: form-data; name="action"\r\n\r\nlog'],
    [
      "before the closing delimiter",
      '--XyZ\r\nContent-Disposition: form-data; name="action"\r\n\r\nlogin\r\n--XyZ\r\n',
    ],
  ];
  for (const [where, body] of cut) {
    await t.step(where, async () => {
      const type = "multipart/form-data; boundary=XyZ";
      const post = { method: "POST", headers: { "content-type": type }, body };
      assert.equal(await winner(table, "/", post), "app");
    });
  }
});

Deno.test("rule confusion: multipart parts are fields exactly when they have no filename, read as UTF-8", async (t) => {
  const table = loginForm();
  const send = (...parts: string[]) =>
    winner(table, "/", {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=XyZ" },
      body: parts.map((p) => `--XyZ\r\n${p}\r\n`).join("") + "--XyZ--\r\n",
    });
  const field = 'Content-Disposition: form-data; name="action"';
  await t.step("an application/octet-stream part without filename is a second copy", async () => {
    // Django and PHP read it as the field action=delete (the last copy).
    const octet = `${field}\r\nContent-Type: application/octet-stream\r\n\r\ndelete`;
    assert.equal(await send(`${field}\r\n\r\nlogin`, octet), "app");
  });
  await t.step("a part with an empty filename is a field copy (Django reads it so)", async () => {
    const empty = 'Content-Disposition: form-data; name="action"; filename=""\r\n\r\ndelete';
    assert.equal(await send(`${field}\r\n\r\nlogin`, empty), "app");
  });
  await t.step("a leading BOM is part of the value (Django and PHP keep it)", async () => {
    assert.equal(await send(`${field}\r\n\r\n\ufefflogin`), "app");
  });
  await t.step(
    "a base64 part counts as read both ways (Django decodes it, PHP does not)",
    async () => {
      const codes = rules([
        { name: "code", type: "regional", match: { body: { form: { code: "YWJjZA==" } } } },
        { name: "app", type: "regional" },
      ]);
      const part = (value: string) =>
        winner(codes, "/", {
          method: "POST",
          headers: { "content-type": "multipart/form-data; boundary=XyZ" },
          body: `--XyZ\r\nContent-Disposition: form-data; name="code"\r\n` +
            `Content-Transfer-Encoding: Base64\r\n\r\n${value}\r\n--XyZ--\r\n`,
        });
      // PHP reads "YWJjZA==", Django "abcd": no single value, no match.
      assert.equal(await part("YWJjZA=="), "app");
      // Not base64 to Python either: Django keeps the bytes, so every framework reads the same.
      assert.equal(
        await send(`${field}\r\nContent-Transfer-Encoding: base64\r\n\r\nlogin`),
        "login",
      );
    },
  );
  await t.step("a part's own charset does not change its value", async () => {
    // Django and PHP read the bytes "login" as they are; busboy would decode UTF-16LE.
    assert.equal(
      await send(`${field}\r\nContent-Type: text/plain; charset=utf-16le\r\n\r\nlogin`),
      "login",
    );
  });
});

Deno.test("CPU exhaustion: a form of 1 MiB that repeats one field is read in linear time", async (t) => {
  const table = loginForm();
  const timed = async (type: string, body: string) => {
    const post = { method: "POST", headers: { "content-type": type }, body };
    const { facts, body: buffered } = request("/", post, 1 << 20);
    const started = performance.now();
    const found = await findRule(table, facts, buffered);
    return { rule: found?.rule.name, ms: performance.now() - started };
  };
  // Copying the list of copies for each new copy took 8 s (multipart) and minutes (urlencoded);
  // read in linear time each is well under a second. The bound only tells the two apart.
  await t.step("urlencoded: 500,000 copies", async () => {
    const { rule, ms } = await timed("application/x-www-form-urlencoded", "a&".repeat(500_000));
    assert.equal(rule, "app");
    assert.ok(ms < 4000, `${Math.round(ms)} ms`);
  });
  await t.step("multipart: 20,000 copies", async () => {
    const part = "--X\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n";
    const body = part.repeat(Math.floor((1 << 20) / part.length) - 1) + "--X--\r\n";
    const { rule, ms } = await timed("multipart/form-data; boundary=X", body);
    assert.equal(rule, "app");
    assert.ok(ms < 4000, `${Math.round(ms)} ms`);
  });
});

Deno.test("rule confusion: a repeated form field matches only when every copy does, as a repeated query parameter", async () => {
  const table = loginForm();
  const urlencoded = (body: string) =>
    winner(table, "/", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body,
    });
  // Django and PHP act on the last copy, Flask on the first: the rule must hold for both.
  assert.equal(await urlencoded("action=login&action=delete"), "app");
  assert.equal(await urlencoded("action=delete&action=login"), "app");
  assert.equal(await urlencoded("action=login&action=login"), "login");
  // A leading BOM belongs to the first name, as Django decodes the body: no field "action".
  assert.equal(await urlencoded("\ufeffaction=login"), "app");
  const multipart = new FormData();
  multipart.append("action", "login");
  multipart.append("action", "delete");
  assert.equal(await winner(table, "/", { method: "POST", body: multipart }), "app");
});

Deno.test("findRule() reads a body regex in the charset the Content-Type declares", async () => {
  const table = rules([
    { name: "cafe", type: "regional", match: { body: { regex: "^café$" } } },
    { name: "app", type: "regional" },
  ]);
  const latin1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9]); // "café" in ISO-8859-1
  const post = (type: string, body: Uint8Array<ArrayBuffer>) =>
    winner(table, "/", { method: "POST", headers: { "content-type": type }, body });
  assert.equal(await post("text/plain; charset=iso-8859-1", latin1), "cafe");
  assert.equal(await post('text/plain; Charset="ISO-8859-1"', latin1), "cafe");
  assert.equal(await post("text/plain", new TextEncoder().encode("café")), "cafe");
  assert.equal(await post("text/plain; charset=no-such-charset", latin1), "app"); // read as UTF-8
  // Rule bypass: a charset inside another parameter's quoted value is no charset (Python's email
  // agrees), so the body is the UTF-8 the app reads.
  const utf8 = new TextEncoder().encode("café");
  assert.equal(await post('text/plain; x="; charset=utf-16le"', utf8), "cafe");
  assert.equal(await post('text/plain; x="open; charset=utf-16le', utf8), "cafe");
  assert.equal(await post("text/plain; x; charset=iso-8859-1", latin1), "cafe");
});

Deno.test("containsSubset() is reflexive and ignores extra keys (property)", () => {
  fc.assert(fc.property(fc.jsonValue(), (value) => {
    assert.equal(containsSubset(value, value), true);
  }));
  fc.assert(
    fc.property(
      fc.dictionary(fc.string(), fc.jsonValue()),
      fc.string(),
      fc.jsonValue(),
      (obj, key, extra) => {
        if (Object.hasOwn(obj, key)) return;
        assert.equal(containsSubset({ ...obj, [key]: extra }, obj), true);
      },
    ),
  );
});
