import assert from "node:assert/strict";
import fc from "fast-check";
import { type DedupInput, dedupKey } from "./dedup_key.ts";
import { normalizeUrl } from "./normalize_url.ts";
import { MAX_CANONICAL_ELEMENTS } from "./canonical_body.ts";
import { MAX_CANONICAL_PAIRS } from "./form_pairs.ts";
import { leastCpuMs } from "../../tests/_cpu_time.ts";

const encoder = new TextEncoder();
const JSON_TYPE = "application/json";
const FORM_TYPE = "application/x-www-form-urlencoded";

function input(overrides: Partial<DedupInput> = {}): DedupInput {
  return {
    method: "POST",
    url: "https://oauth2.example.test/token",
    contentType: JSON_TYPE,
    body: encoder.encode('{"code":"abc","grant_type":"authorization_code"}'),
    authorization: "Basic Y2xpZW50OnNlY3JldA==",
    ...overrides,
  };
}

/** Serializes `value` with its object keys in the order `shuffle` gives. */
function serializeShuffled(value: unknown, order: (keys: string[]) => string[]): string {
  if (Array.isArray(value)) return `[${value.map((v) => serializeShuffled(v, order)).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    const keys = order(Object.keys(record));
    return `{${
      keys.map((k) => `${JSON.stringify(k)}:${serializeShuffled(record[k], order)}`).join(",")
    }}`;
  }
  return JSON.stringify(value);
}

/** Whether no object in `value` has two keys that differ only in letter case (ASCII here). */
function noCaseTwins(value: unknown): boolean {
  if (Array.isArray(value)) return value.every(noCaseTwins);
  if (value === null || typeof value !== "object") return true;
  const keys = Object.keys(value);
  return new Set(keys.map((k) => k.toLowerCase())).size === keys.length &&
    Object.values(value).every(noCaseTwins);
}

/**
 * JSON objects whose keys differ in more than letter case: bodies with such twins are keyed on
 * their bytes (a Go or ASP.NET Core provider reads the later twin), so their order counts.
 */
const jsonObject = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), {
  minKeys: 1,
  maxKeys: 6,
}).filter(noCaseTwins);
const formPairs = fc.array(fc.tuple(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 })), {
  minLength: 1,
  maxLength: 8,
});
/**
 * Pairs with distinct names, in any letter case: their order is all that differs between two
 * spellings. Names with `.`, a space, `[`, `]` or NUL, which PHP and Rack read as parts of other
 * names, keep their order.
 */
const distinctFormPairs = fc.uniqueArray(
  fc.tuple(
    fc.string({ maxLength: 6 }).filter((name) => !/[ .[\]\0]/.test(name)),
    fc.string({ maxLength: 6 }),
  ),
  { minLength: 1, maxLength: 8, selector: ([name]) => name.toLowerCase() },
);

Deno.test("dedupKey()", async (t) => {
  await t.step("ignores the order of JSON object keys, at every depth", async () => {
    await fc.assert(
      fc.asyncProperty(jsonObject, fc.nat(), async (value, seed) => {
        const reversed = serializeShuffled(value, (keys) => keys.toReversed());
        const rotated = serializeShuffled(
          value,
          (keys) => keys.map((_, i) => keys[(i + seed) % keys.length]),
        );
        const a = await dedupKey(input({ body: encoder.encode(reversed) }));
        const b = await dedupKey(input({ body: encoder.encode(rotated) }));
        assert.equal(a, b);
      }),
      { numRuns: 200 },
    );
  });

  await t.step("ignores the order of form parameters", async () => {
    await fc.assert(
      fc.asyncProperty(distinctFormPairs, async (pairs) => {
        const forward = new URLSearchParams(pairs).toString();
        const backward = new URLSearchParams(pairs.toReversed()).toString();
        const a = await dedupKey(input({ contentType: FORM_TYPE, body: encoder.encode(forward) }));
        const b = await dedupKey(input({ contentType: FORM_TYPE, body: encoder.encode(backward) }));
        assert.equal(a, b);
      }),
      { numRuns: 200 },
    );
  });

  await t.step(
    "answer sharing: a repeated parameter's values in another order are another request",
    async () => {
      // Go and URLSearchParams read the first `code`, Django and PHP the last: either way these differ.
      const form = (body: string) =>
        dedupKey(input({ contentType: FORM_TYPE, body: encoder.encode(body) }));
      assert.notEqual(await form("code=a&code=b"), await form("code=b&code=a"));
      assert.equal(await form("x=1&code=a&code=b"), await form("code=a&x=1&code=b"));
      const url = (query: string) =>
        dedupKey(input({ url: `https://oauth2.example.test/t?${query}` }));
      assert.notEqual(await url("scope=a&scope=b"), await url("scope=b&scope=a"));
    },
  );

  await t.step(
    "cache poisoning: a byte-order mark before a form or JSON body is part of the key",
    async () => {
      for (
        const [contentType, body] of [[FORM_TYPE, "code=a"], ["application/json", '{"code":"a"}']]
      ) {
        const plain = await dedupKey(input({ contentType, body: encoder.encode(body) }));
        const marked = await dedupKey(
          input({ contentType, body: encoder.encode(`\uFEFF${body}`) }),
        );
        assert.notEqual(plain, marked, contentType);
      }
    },
  );

  await t.step("answer sharing: a JSON body that repeats a key is keyed on its bytes", async () => {
    const json = (body: string) =>
      dedupKey(input({ contentType: JSON_TYPE, body: encoder.encode(body) }));
    // JSON.parse keeps the last "code", a first-wins parser the first: these are two requests.
    assert.notEqual(await json('{"code":"a","code":"b"}'), await json('{"code":"b"}'));
    assert.notEqual(await json('{"x":{"k":1,"\\u006b":2}}'), await json('{"x":{"k":2}}'));
    // Key order still does not count where no key repeats, at any depth.
    assert.equal(
      await json('{"a":[{"k":1},{"k":2}],"b":"k"}'),
      await json('{"b":"k","a":[{"k":1},{"k":2}]}'),
    );
  });

  await t.step("ignores the order of query parameters and the default port", async () => {
    const a = await dedupKey(input({ url: "https://OAuth2.Example.test:443/token?b=2&a=1" }));
    const b = await dedupKey(input({ url: "https://oauth2.example.test/token?a=1&b=2" }));
    assert.equal(a, b);
  });

  await t.step("changes with the method, the target, a body value or Authorization", async () => {
    await fc.assert(
      fc.asyncProperty(
        jsonObject,
        fc.string({ maxLength: 10 }),
        fc.constantFrom("GET", "PUT", "DELETE", "PATCH"),
        fc.webPath(),
        fc.string({ maxLength: 20 }),
        async (value, newValue, method, path, authorization) => {
          const body = encoder.encode(JSON.stringify(value));
          const base = await dedupKey(input({ body }));
          const firstKey = Object.keys(value)[0];
          const changed = JSON.stringify({ ...value, [firstKey]: [value[firstKey], newValue] });
          assert.notEqual(await dedupKey(input({ body, method })), base);
          if (`/${path.replace(/^\//, "")}` !== "/token") {
            const url = new URL("https://oauth2.example.test");
            url.pathname = path;
            if (url.pathname !== "/token") {
              assert.notEqual(await dedupKey(input({ body, url })), base);
            }
          }
          assert.notEqual(await dedupKey(input({ body: encoder.encode(changed) })), base);
          if (authorization !== "Basic Y2xpZW50OnNlY3JldA==") {
            assert.notEqual(await dedupKey(input({ body, authorization })), base);
          }
          assert.notEqual(await dedupKey(input({ body, authorization: null })), base);
        },
      ),
      { numRuns: 200 },
    );
  });

  await t.step("changes with a form value or the target host", async () => {
    await fc.assert(
      fc.asyncProperty(formPairs, fc.string({ maxLength: 6 }), async (pairs, extra) => {
        const body = encoder.encode(new URLSearchParams(pairs).toString());
        const base = await dedupKey(input({ contentType: FORM_TYPE, body }));
        const changedPairs = pairs.map(([k, v], i) => [k, i === 0 ? `${v}${extra}x` : v]);
        const changed = encoder.encode(new URLSearchParams(changedPairs).toString());
        assert.notEqual(await dedupKey(input({ contentType: FORM_TYPE, body: changed })), base);
        const other = await dedupKey(
          input({ contentType: FORM_TYPE, body, url: "https://other.example.test/token" }),
        );
        assert.notEqual(other, base);
      }),
      { numRuns: 200 },
    );
  });

  await t.step("keys JSON that does not parse on its raw bytes, without an error", async () => {
    const a = await dedupKey(input({ body: encoder.encode('{"b":1, "a":') }));
    const b = await dedupKey(input({ body: encoder.encode('{"b":1,"a":') }));
    assert.match(a, /^[0-9a-f]{64}$/);
    assert.notEqual(a, b);
  });

  await t.step("keeps large JSON numbers apart", async () => {
    const a = await dedupKey(input({ body: encoder.encode('{"n":12345678901234567890}') }));
    const b = await dedupKey(input({ body: encoder.encode('{"n":12345678901234567891}') }));
    assert.notEqual(a, b);
  });

  await t.step("tells apart form values that differ only in bytes that are not UTF-8", async () => {
    const form = (body: string) =>
      dedupKey(input({ contentType: FORM_TYPE, body: encoder.encode(body) }));
    // URLSearchParams decodes both %FF and %FE to U+FFFD: keyed that way, one caller's code
    // exchange would be answered with another's cached answer.
    assert.notEqual(await form("code=%FF"), await form("code=%FE"));
    assert.notEqual(await form("code=%C3%28"), await form("code=%FF%28"));
    // What URLSearchParams treats as the same still is: + and %20, escape case, pair order.
    assert.equal(await form("a=x+y&b=%c3%a9"), await form("b=%C3%A9&a=x%20y"));
  });

  await t.step(
    "keys form bodies and queries that parsers read differently as written",
    async () => {
      const form = (body: string) =>
        dedupKey(input({ contentType: FORM_TYPE, body: encoder.encode(body) }));
      // Go's ParseQuery (Dex, Hydra, Zitadel) refuses a bare % or a ;, URLSearchParams keeps them:
      // the provider may answer one 400 and the other 200, so they must not share an answer.
      assert.notEqual(await form("code=ab%GG"), await form("code=ab%25GG"));
      assert.notEqual(await form("code=a%"), await form("code=a%25"));
      assert.notEqual(await form("code=ab;cd"), await form("code=ab%3Bcd"));
      const url = (target: string) => dedupKey(input({ url: target }));
      assert.notEqual(
        await url("https://provider.test/token?code=ab;cd"),
        await url("https://provider.test/token?code=ab%3Bcd"),
      );
    },
  );

  await t.step("keeps other bodies byte for byte", async () => {
    const a = await dedupKey(input({ contentType: "text/plain", body: encoder.encode("a=1&b=2") }));
    const b = await dedupKey(input({ contentType: "text/plain", body: encoder.encode("b=2&a=1") }));
    assert.notEqual(a, b);
  });
});

Deno.test("normalizeUrl() lower-cases scheme and host, drops default ports, sorts the query by name", () => {
  assert.equal(
    normalizeUrl("HTTPS://Clever.COM:443/oauth/Tokens?z=1&a=2&a=1"),
    "https://clever.com/oauth/Tokens?a=2&a=1&z=1",
  );
  assert.equal(normalizeUrl("http://h.test:8080/x"), "http://h.test:8080/x");
  assert.equal(normalizeUrl("http://h.test:80/x?q=a%20b"), "http://h.test/x?q=a+b");
  assert.notEqual(normalizeUrl("http://h.test/x?q=%FF"), normalizeUrl("http://h.test/x?q=%FE"));
});

/** The best of three timings of one key, in milliseconds. */
/** The CPU milliseconds of the cheapest of three keys of `text`. */
function fastestKey(contentType: string, text: string): Promise<number> {
  const body = encoder.encode(text);
  return leastCpuMs(() => dedupKey(input({ contentType, body })));
}

Deno.test("CPU exhaustion: the key of a 1 MiB form costs about what a 1 MiB JSON string does", async () => {
  const size = 1 << 20;
  const json = await fastestKey(JSON_TYPE, JSON.stringify({ code: "x".repeat(size - 12) }));
  // Encoding character by character took 1.1–1.8 s here (a caller holding the Ocap-Key blocks
  // the isolate that routes everyone's requests).
  const form = await fastestKey(FORM_TYPE, "code=" + "x".repeat(size - 5));
  assert.ok(form < 10 * json + 5, `${form.toFixed(1)} ms vs ${json.toFixed(1)} ms`);
});

Deno.test("dedupKey() keys a body of more than a thousand pairs or elements on its bytes", async (t) => {
  await t.step("form: order counts beyond MAX_CANONICAL_PAIRS, not below", async () => {
    const form = (n: number, first: string) =>
      [first, ...Array.from({ length: n - 1 }, (_, i) => `k${i}=v`)].join("&");
    const key = (text: string) =>
      dedupKey(input({ contentType: FORM_TYPE, body: encoder.encode(text) }));
    const few = form(MAX_CANONICAL_PAIRS - 1, "a=1");
    assert.equal(await key(few), await key(few.split("&").reverse().join("&")));
    const many = form(MAX_CANONICAL_PAIRS + 1, "a=1");
    assert.equal(await key(many), await key(many), "identical requests still share one key");
    assert.notEqual(await key(many), await key(many.split("&").reverse().join("&")));
  });
  await t.step("JSON: key order counts beyond MAX_CANONICAL_ELEMENTS, not below", async () => {
    const json = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
    const key = (value: unknown, reverse: boolean) =>
      dedupKey(input({
        body: encoder.encode(serializeShuffled(value, (keys) => reverse ? keys.reverse() : keys)),
      }));
    const few = json(MAX_CANONICAL_ELEMENTS - 1);
    assert.equal(await key(few, false), await key(few, true));
    const many = json(MAX_CANONICAL_ELEMENTS + 1);
    assert.equal(await key(many, false), await key(many, false));
    assert.notEqual(await key(many, false), await key(many, true));
  });
});

Deno.test("CPU amplification: the key of 1 MiB of tiny pairs or numbers costs about what one 1 MiB string does", async (t) => {
  const size = 1 << 20;
  const one = await fastestKey(JSON_TYPE, JSON.stringify({ code: "x".repeat(size - 12) }));
  // Before the caps: 1.2–1.5 s for the pairs, 0.5–0.7 s for the numbers (a caller holding the
  // Ocap-Key blocks the isolate that routes everyone's requests).
  await t.step("a&a&… form", async () => {
    const many = await fastestKey(FORM_TYPE, "a&".repeat(size / 2));
    assert.ok(many < 10 * one + 5, `${many.toFixed(1)} ms vs ${one.toFixed(1)} ms`);
  });
  await t.step("[0,0,…] JSON", async () => {
    const many = await fastestKey(JSON_TYPE, `[${"0,".repeat(size / 2 - 1)}0]`);
    assert.ok(many < 10 * one + 5, `${many.toFixed(1)} ms vs ${one.toFixed(1)} ms`);
  });
});

Deno.test("dedupKey() answer sharing: an empty Authorization header is not the same request as none", async () => {
  const base = {
    method: "POST",
    url: "https://oauth2.example.test/token",
    contentType: "application/x-www-form-urlencoded",
    body: encoder.encode("grant_type=authorization_code&code=abc&client_id=app"),
  };
  const without = await dedupKey({ ...base, authorization: null });
  const empty = await dedupKey({ ...base, authorization: "" });
  assert.notEqual(empty, without);
});

Deno.test("dedupKey() answer sharing: a body sent without its Content-Type is not the same request as one with it", async (t) => {
  for (
    const [type, text] of [
      ["application/x-www-form-urlencoded", "code=abc&grant_type=authorization_code"],
      ["application/json", '{"code":"abc","grant_type":"authorization_code"}'],
    ]
  ) {
    await t.step(type, async () => {
      const base = {
        method: "POST",
        url: "https://oauth2.example.test/token",
        body: encoder.encode(text),
        authorization: null,
      };
      const typed = await dedupKey({ ...base, contentType: type });
      const untyped = await dedupKey({ ...base, contentType: null });
      assert.notEqual(untyped, typed);
    });
  }
});

/** The key of a POST of `body` to the token endpoint, without Authorization. */
const keyOf = (contentType: string, body: string | Uint8Array) =>
  dedupKey(input({
    contentType,
    body: typeof body === "string" ? encoder.encode(body) : body,
    authorization: null,
  }));

Deno.test("dedupKey() answer sharing: JSON keys Go folds together through ſ (U+017F) keep their order", async () => {
  // Go's encoding/json matches "ſcope" to a Scope field as it does "scope": the later one wins.
  const a = await keyOf(JSON_TYPE, '{"scope":"read","ſcope":"admin"}');
  const b = await keyOf(JSON_TYPE, '{"ſcope":"admin","scope":"read"}');
  assert.notEqual(a, b);
});

Deno.test("dedupKey() answer sharing: JSON keys that are two lone surrogates, one U+FFFD key to Go, keep their order", async () => {
  // Go's encoding/json decodes a lone surrogate escape as U+FFFD: to a Go provider both bodies
  // repeat one key, and the later value wins ("b", then "a").
  const a = await keyOf(JSON_TYPE, '{"code":"x","\\ud800":"a","\\udc00":"b"}');
  const b = await keyOf(JSON_TYPE, '{"code":"x","\\udc00":"b","\\ud800":"a"}');
  assert.notEqual(a, b);
});

Deno.test("dedupKey() answer sharing: each conditional or range header makes another request", async (t) => {
  const get = (headers: Headers) =>
    input({
      method: "GET",
      contentType: null,
      body: new Uint8Array(),
      authorization: null,
      headers,
    });
  const plain = await dedupKey(get(new Headers()));
  for (
    const [name, a, b] of [
      ["range", "bytes=0-99", "bytes=100-199"],
      ["if-range", '"v1"', '"v2"'],
      ["if-match", '"v1"', '"v2"'],
      ["if-none-match", '"v1"', '"v2"'],
      ["if-modified-since", "Mon, 07 Dec 2026 00:00:00 GMT", "Tue, 08 Dec 2026 00:00:00 GMT"],
      ["if-unmodified-since", "Mon, 07 Dec 2026 00:00:00 GMT", "Tue, 08 Dec 2026 00:00:00 GMT"],
    ]
  ) {
    await t.step(name, async () => {
      const first = await dedupKey(get(new Headers({ [name]: a })));
      const second = await dedupKey(get(new Headers({ [name]: b })));
      assert.notEqual(first, plain, `a ${name} request would get the whole resource's answer`);
      assert.notEqual(first, second, `two ${name} values would share one answer`);
    });
  }
});

Deno.test("dedupKey() answer sharing: JSON keys Go folds together keep their order at any depth", async (t) => {
  // Go's encoding/json and ASP.NET Core match "Scope" to the field "scope": the later one wins, so
  // these two bodies ask for different scopes and must not share one answer.
  await t.step("inside a nested object", async () => {
    assert.notEqual(
      await keyOf(JSON_TYPE, '{"grant":{"scope":"read","Scope":"admin"}}'),
      await keyOf(JSON_TYPE, '{"grant":{"Scope":"admin","scope":"read"}}'),
    );
  });
  await t.step("inside an object in an array", async () => {
    assert.notEqual(
      await keyOf(JSON_TYPE, '[{"scope":"read","Scope":"admin"}]'),
      await keyOf(JSON_TYPE, '[{"Scope":"admin","scope":"read"}]'),
    );
  });
});

Deno.test("dedupKey() answer sharing: a number and an object that spells its source are two requests", async () => {
  assert.notEqual(
    await keyOf(JSON_TYPE, '{"amount":1}'),
    await keyOf(JSON_TYPE, '{"amount":{"source":"1"}}'),
  );
  assert.notEqual(
    await keyOf(JSON_TYPE, "[1]"),
    await keyOf(JSON_TYPE, '[{"source":"1"}]'),
  );
});

Deno.test("dedupKey() answer sharing: bodies that differ only in bytes that are not UTF-8 are two requests", async (t) => {
  const raw = (text: string, byte: number) =>
    Uint8Array.of(...encoder.encode(text), byte, 0x22, 0x7d);
  await t.step("JSON", async () => {
    // Decoded leniently, 0xFF and 0xFE are both U+FFFD: one caller's code would get another's answer.
    assert.notEqual(
      await keyOf(JSON_TYPE, raw('{"code":"', 0xff)),
      await keyOf(JSON_TYPE, raw('{"code":"', 0xfe)),
    );
  });
  await t.step("form", async () => {
    assert.notEqual(
      await keyOf(FORM_TYPE, Uint8Array.of(...encoder.encode("code="), 0xff)),
      await keyOf(FORM_TYPE, Uint8Array.of(...encoder.encode("code="), 0xfe)),
    );
  });
});

Deno.test("dedupKey() coalesces JSON whose keys only come in another order under any JSON type", async (t) => {
  for (
    const type of [
      "application/vnd.api+json",
      "application/merge-patch+json",
      "Application/JSON",
      "application/json; charset=utf-8",
    ]
  ) {
    await t.step(type, async () => {
      assert.equal(
        await keyOf(type, '{"code":"abc","grant_type":"authorization_code"}'),
        await keyOf(type, '{"grant_type":"authorization_code","code":"abc"}'),
      );
    });
  }
  await t.step("Application/X-WWW-Form-Urlencoded", async () => {
    const type = "Application/X-WWW-Form-Urlencoded";
    assert.equal(
      await keyOf(type, "code=abc&grant_type=x"),
      await keyOf(type, "grant_type=x&code=abc"),
    );
  });
});

Deno.test("dedupKey() keeps If-Match and If-None-Match with one value apart (412 vs 304 are two answers)", async () => {
  const get = (headers: Headers) =>
    dedupKey(input({ method: "GET", contentType: null, body: new Uint8Array(), headers }));
  const ifMatch = await get(new Headers({ "if-match": '"v1"' }));
  const ifNoneMatch = await get(new Headers({ "if-none-match": '"v1"' }));
  assert.notEqual(ifMatch, ifNoneMatch);
  const date = "Mon, 07 Dec 2026 00:00:00 GMT";
  const modified = await get(new Headers({ "if-modified-since": date }));
  const unmodified = await get(new Headers({ "if-unmodified-since": date }));
  assert.notEqual(modified, unmodified);
});

Deno.test("dedupKey() keys the whole method, not a prefix of it (PROPFIND and PROPPATCH are two requests)", async () => {
  const key = (method: string) => dedupKey(input({ method }));
  assert.notEqual(await key("PROPFIND"), await key("PROPPATCH"));
});

Deno.test("dedupKey() keeps the order of form names that are bytes 0x80-0x9F (one U+FFFD name to a UTF-8 server)", async () => {
  const key = (body: string) =>
    dedupKey(
      input({ contentType: "application/x-www-form-urlencoded", body: encoder.encode(body) }),
    );
  assert.notEqual(await key("%80=a&%81=b"), await key("%81=b&%80=a"));
  assert.notEqual(await key("code=x&%9F=a&%90=b"), await key("code=x&%90=b&%9F=a"));
});

Deno.test("answer sharing: an escape of a hex digit A-F or a-f is one code, and that escape escaped is another", async (t) => {
  // `%4F` is the letter O; `%254F` is the three characters %4F. A provider reads two codes.
  for (const escape of ["%4F", "%4f", "%2F", "%2f", "%FF", "%ff"]) {
    const escaped = `%25${escape.slice(1)}`;
    await t.step(`code=ab${escape} vs code=ab${escaped}`, async () => {
      assert.notEqual(
        await keyOf(FORM_TYPE, `code=ab${escape}&grant_type=authorization_code`),
        await keyOf(FORM_TYPE, `code=ab${escaped}&grant_type=authorization_code`),
      );
      const query = (code: string) =>
        dedupKey(input({ url: `https://p.test/token?code=${code}`, body: new Uint8Array() }));
      assert.notEqual(await query(`ab${escape}`), await query(`ab${escaped}`));
    });
  }
  assert.equal(await keyOf(FORM_TYPE, "code=ab%4F"), await keyOf(FORM_TYPE, "code=abO"));
  assert.equal(await keyOf(FORM_TYPE, "code=ab%4f"), await keyOf(FORM_TYPE, "code=abO"));
});

Deno.test("answer sharing: only application/json and types ending in +json are read as JSON; longer names are keyed on their bytes", async () => {
  for (const type of ["application/geo+json-seq", "application/foo+jsonx", "application/jsonx"]) {
    assert.notEqual(await keyOf(type, '{"b":1,"a":2}'), await keyOf(type, '{"a":2,"b":1}'), type);
  }
  const patch = "application/merge-patch+json";
  assert.equal(await keyOf(patch, '{"b":1,"a":2}'), await keyOf(patch, '{"a":2,"b":1}'));
});
