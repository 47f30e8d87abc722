import assert from "node:assert/strict";
import fc from "fast-check";
import { isPinCookieName } from "./app_names.ts";
import { cookieName, cookieValue, filterCookieHeader } from "./cookies.ts";
import { asSentInUtf8 } from "./wire_text.ts";

const PIN = "__Host-vestibule-region";

Deno.test("filterCookieHeader() keeps the chosen pairs byte for byte", () => {
  assert.equal(filterCookieHeader("a=1; b=2; c=3", (n) => n !== "b"), "a=1; c=3");
  assert.equal(filterCookieHeader('a="x y"; b=%ZZ', () => true), 'a="x y"; b=%ZZ');
  assert.equal(filterCookieHeader("a=1", () => false), undefined);
  assert.equal(filterCookieHeader(null, () => true), undefined);
  assert.equal(filterCookieHeader(" ; garbage ;=x; a=1 ", () => true), "a=1");
});

Deno.test("filterCookieHeader() cookie smuggling: a refused name after a comma drops its pair, a comma in a value does not", () => {
  const notPin = (n: string) => n !== "pin";
  assert.equal(filterCookieHeader("a=1, pin=au; b=2", notPin), "b=2");
  assert.equal(filterCookieHeader("a=1,pin =au", notPin), undefined);
  assert.equal(filterCookieHeader("a=1, b=2; c=3", (n) => n !== "b"), "c=3", "whitelists too");
  assert.equal(
    filterCookieHeader('prefs=x,y; j={"a":1,"b":2}', notPin),
    'prefs=x,y; j={"a":1,"b":2}',
  );
  assert.equal(filterCookieHeader("a=1, c=2", notPin), "a=1, c=2");
  // After a comma, `=b` has an empty name (Rack files it under ""): the listed cookie is kept.
  assert.equal(filterCookieHeader("csrftoken=a,=b", (n) => n === "csrftoken"), "csrftoken=a,=b");
  assert.equal(filterCookieHeader("s=1; junk, pin=au", notPin), "s=1", "comma before the '='");
  assert.equal(filterCookieHeader("s=1;\x85pin=au;\x1c pin =x", notPin), "s=1", "Python's spaces");
  assert.equal(filterCookieHeader("a=c pin=au; b=c\tpin = au; s=1", notPin), "s=1", "SimpleCookie");
  assert.equal(
    filterCookieHeader('a = 1; q="x y"', (n) => n === "a" || n === "q"),
    'a = 1; q="x y"',
  );
  assert.equal(cookieValue("s=1;\x85pin=au", "pin"), undefined, "stripped, never read as the pin");
});

/**
 * The names Python's `http.cookies.SimpleCookie` finds in a header (its pattern, with `re.ASCII`,
 * matched from where the last match ended): what Bottle and aiohttp read.
 */
function simpleCookieNames(header: string): string[] {
  const key = String.raw`\w\d!#%&'~_\`><@,:/\$\*\+\-\.\^\|\)\(\?\}\{\=`;
  const s = String.raw`[ \t\n\r\f\v]`;
  const pattern = new RegExp(
    String
      .raw`${s}*([${key}]+?)(${s}*=${s}*("(?:[^\\"]|\\.)*"|\w{3},${s}[\w\d \t\n\r\f\v-]{9,11}${s}[\d:]{8}${s}GMT|[${key}\[\]]*))?${s}*(${s}+|;|$)`,
    "y",
  );
  const names: string[] = [];
  for (let i = 0; i < header.length;) {
    pattern.lastIndex = i;
    const match = pattern.exec(header);
    if (!match) break;
    i = pattern.lastIndex;
    // A name without a value that is no attribute flag makes Python drop the whole header.
    if (match[2] === undefined) {
      if (/^(secure|httponly|partitioned)$/i.test(match[1])) continue;
      return [];
    }
    names.push(match[1]);
  }
  return names;
}

/** The names Rack finds: pairs split on `;` or `,`, each name up to its first `=`. */
const rackNames = (header: string) =>
  header.split(/[;,] */).filter((p) => p.includes("=")).map((p) => p.slice(0, p.indexOf("=")));

Deno.test("simpleCookieNames() reads headers as Python's SimpleCookie does", () => {
  // Checked against Python 3.11: SimpleCookie().load(header).keys().
  assert.deepEqual(simpleCookieNames("a=1; b=2"), ["a", "b"]);
  assert.deepEqual(simpleCookieNames("csrftoken=abc== pin=au"), ["csrftoken", "pin"]);
  assert.deepEqual(simpleCookieNames('filters="size=M color=red"; c=1'), ["filters", "c"]);
  assert.deepEqual(simpleCookieNames("a=c pin = au"), ["a", "pin"]);
  assert.deepEqual(simpleCookieNames("PIN a=="), [], "a name without a value voids the header");
});

Deno.test("filterCookieHeader() cookie smuggling: neither Rack nor Python's SimpleCookie finds a refused name in what it keeps (property)", () => {
  // Headers made of the pieces a smuggler has: names, the refused one among them, and separators.
  const header = fc.array(
    fc.constantFrom("a", "pin", "PIN", "=", "==", ";", ",", " ", "\t", "1", '"', "\\", "\xa0"),
    { maxLength: 30 },
  ).map((parts) => parts.join(""));
  fc.assert(
    fc.property(header, (text) => {
      const out = filterCookieHeader(text, (name) => name.toLowerCase() !== "pin") ?? "";
      for (const name of [...simpleCookieNames(out), ...rackNames(out)]) {
        assert.notEqual(name.trim().toLowerCase(), "pin", JSON.stringify({ text, out }));
      }
    }),
    { numRuns: 5000 },
  );
});

Deno.test("filterCookieHeader() keeps what Python itself quoted, and raw UTF-8 bytes, in one pass", () => {
  const whitelist = (n: string) => n === "filters" || n === "prefs" || n === "csrftoken";
  // SimpleCookie writes filters="size=M color=red" and reads it back as one cookie.
  assert.equal(
    filterCookieHeader('filters="size=M color=red"; csrftoken=c', whitelist),
    'filters="size=M color=red"; csrftoken=c',
  );
  // Deno reads header bytes as Latin-1: the 0xA0 byte of a UTF-8 "Р" is U+00A0, not a space.
  const utf8 = String.fromCharCode(...new TextEncoder().encode("city=Рига"));
  assert.equal(filterCookieHeader(`prefs=${utf8}`, whitelist), `prefs=${utf8}`);
  // A long run of spaces is read once: regexes this replaced backtracked over it (1.4 s, 4 s).
  for (const header of [`csrftoken=a${" ".repeat(60_000)}b`, `\x85a${" \t".repeat(30_000)}b=1`]) {
    const started = performance.now();
    filterCookieHeader(header, whitelist);
    assert.ok(performance.now() - started < 500, "the filter is linear in the header");
  }
});

Deno.test("filterCookieHeader() cookie smuggling: a quoted value Python reads across ';' passes nothing on", () => {
  const whitelist = (n: string) => n === "csrftoken" || n === "theme";
  for (
    const header of [
      'csrftoken="q; theme=" __Host-vestibule-region=au',
      'csrftoken="q\\; theme=" __Host-vestibule-region=au',
    ]
  ) {
    const out = filterCookieHeader(header, whitelist) ?? "";
    assert.ok(!simpleCookieNames(out).includes("__Host-vestibule-region"), out);
  }
  assert.equal(
    filterCookieHeader('theme="a\\"b"; csrftoken=c', whitelist),
    'theme="a\\"b"; csrftoken=c',
  );
});

Deno.test("filterCookieHeader() never lets a refused name through, whatever the header, split on ; or , (property)", () => {
  // Headers built from pairs that often carry the refused name: random strings alone almost never
  // hold `name=`, and the property then held whatever the filter did.
  const pair = fc.oneof(
    fc.string(),
    fc.tuple(fc.constantFrom("pin", " pin", "pin ", "a", "b"), fc.string())
      .map(([name, value]) => `${name}=${value}`),
  );
  const header = fc.tuple(fc.array(pair, { maxLength: 6 }), fc.constantFrom(";", "; ", ",", ", "))
    .map(([pairs, separator]) => pairs.join(separator));
  fc.assert(
    fc.property(header, fc.constantFrom("pin", "a"), (header, refused) => {
      const out = filterCookieHeader(header, (name) => name !== refused.trim());
      // Not even to a parser that also splits on commas (RFC 2109, Rack).
      for (const piece of out?.split(/[;,]/) ?? []) {
        if (!piece.includes("=")) continue;
        assert.notEqual(piece.slice(0, piece.indexOf("=")).trim(), refused.trim());
      }
    }),
    { numRuns: 1000 },
  );
});

Deno.test("cookieValue() reads the first pair of that name, unquoted", () => {
  assert.equal(cookieValue("a=1; pin=au; pin=us", "pin"), "au");
  assert.equal(cookieValue('pin="us"', "pin"), "us");
  assert.equal(cookieValue(" pin = au ;x", "pin"), "au");
  assert.equal(cookieValue("xpin=au; pinx=us", "pin"), undefined);
  assert.equal(cookieValue("pin", "pin"), undefined);
  assert.equal(cookieValue(null, "pin"), undefined);
});

Deno.test("cookieValue() reads exactly the pair filterCookieHeader() would keep or strip (property)", () => {
  const piece = fc.oneof(
    fc.string(),
    fc.constantFrom("pin=au", " pin = us ", 'pin="au"', "pin", "=pin"),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 8 }), (pieces) => {
      const header = pieces.join(";");
      const kept = filterCookieHeader(header, (n) => n === "pin");
      const first = kept?.split(";")[0];
      const expected = first?.slice(first.indexOf("=") + 1).trim();
      const unquoted = expected && expected.length >= 2 && expected.startsWith('"') &&
          expected.endsWith('"')
        ? expected.slice(1, -1)
        : expected;
      assert.equal(cookieValue(header, "pin"), unquoted);
    }),
    { numRuns: 1000 },
  );
});

Deno.test("CPU exhaustion: cookieValue() reads a 64 KB Cookie header of ';' pieces in linear time", () => {
  const fastest = (header: string) => {
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      cookieValue(header, PIN);
      best = Math.min(best, performance.now() - started);
    }
    return best;
  };
  // Same length, one with a value per piece: searching the rest for '=' from every ';' took 15 ms
  // per request on the hostile one, and a burst of them blocked the event loop for seconds.
  const usual = fastest(PIN + "; a=b".repeat(13_000));
  const hostile = fastest(PIN + ";".repeat(65_000));
  assert.ok(hostile < 10 * usual + 5, `${hostile.toFixed(1)} ms vs ${usual.toFixed(1)} ms`);
  assert.equal(cookieValue(`${";".repeat(1000)}${PIN}=au`, PIN), "au");
  assert.equal(cookieValue(`${PIN};${PIN}=us`, PIN), "us");
  assert.equal(cookieValue(`a=1;${PIN}`, PIN), undefined);
});

Deno.test("filterCookieHeader() cookie smuggling: an escaped quote does not end a quoted value, as Python reads it", () => {
  // Python's SimpleCookie reads `"\" b="` as one quoted value (`\"` is an escape), then the pin
  // as a cookie of its own; a filter that ended the value at `\"` saw `b=" … "` hide the pin.
  const whitelist = (n: string) => n === "a" || n === "b";
  const header = 'a="\\" b=" __Host-vestibule-region=au "';
  assert.ok(simpleCookieNames(header).includes("__Host-vestibule-region"), "Python reads the pin");
  const out = filterCookieHeader(header, whitelist) ?? "";
  assert.ok(!simpleCookieNames(out).includes("__Host-vestibule-region"), out);
});

Deno.test("filterCookieHeader() keeps an allowed cookie whose value holds ' =' (Rack reads session=\"a =b\")", () => {
  // A word with no name is no cookie to any reader: it must not make an allow-list drop the pair.
  const only = (name: string) => name === "session";
  assert.equal(filterCookieHeader("session=a =b; other=1", only), "session=a =b");
});

const notPin = (name: string) => !isPinCookieName(name, PIN);

Deno.test("filterCookieHeader() forced pin: every Unicode space Python's strip() removes hides no pin, before or after the name", async (t) => {
  // WSGI Django decodes the header as UTF-8 and strips names: `\u3000__Host-vestibule-region`
  // is the pin to it, so the edge must strip that pair as the pin too.
  const spaces = [
    "\u0085",
    "\u00a0",
    "\u1680",
    ..."\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f",
    "\u205f",
    "\u3000",
  ];
  for (const space of spaces) {
    const wire = asSentInUtf8(space);
    await t.step(`U+${space.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`, () => {
      assert.equal(filterCookieHeader(`${wire}${PIN}=au; a=1`, notPin), "a=1", "before");
      assert.equal(filterCookieHeader(`${PIN}${wire}=au; a=1`, notPin), "a=1", "after");
    });
  }
});

Deno.test("filterCookieHeader() keeps an allowed non-ASCII name apart from one that differs in its last octet (voilà, voilÅ)", () => {
  // `à` is C3 A0 and `Å` C3 85: the last octet is a space on its own, not here.
  const allowed = cookieName(asSentInUtf8("voilà"));
  const keep = (name: string) => name === allowed;
  const [voila, voilaRing] = [asSentInUtf8("voilà"), asSentInUtf8("voilÅ")];
  assert.equal(filterCookieHeader(`${voilaRing}=1; ${voila}=2`, keep), `${voila}=2`);
});

Deno.test("cookieValue() reads a pin whose name a tab precedes, as RFC 6265bis trims SP and HTAB", () => {
  assert.equal(cookieValue(`a=1;\t${PIN}=au`, PIN), "au");
  assert.equal(cookieValue(`a=1; ${PIN}\t=au`, PIN), "au");
});

Deno.test("cookieValue() trims a value of SP and HTAB only: au followed by an A0, VT or FF is no region", () => {
  assert.equal(cookieValue(`${PIN}= au\t`, PIN), "au");
  for (const octet of ["\xa0", "\v", "\f"]) {
    assert.equal(cookieValue(`${PIN}=au${octet}`, PIN), `au${octet}`, JSON.stringify(octet));
  }
});

Deno.test("filterCookieHeader() with never: a pin ASP.NET Core reads behind a byte above 0x7F goes, a UTF-8 name on the allow-list stays", () => {
  const isPin = (name: string) => isPinCookieName(name, PIN);
  // Kestrel with Latin-1 or UTF-8 headers, or HTTP.sys, hands such a pair to ASP.NET Core, whose
  // parser reads the pin behind the backslash (a Latin-1 é, then a UTF-8 one).
  for (const pair of [`x=a\xe9\\${PIN}=au`, `x=a\xc3\xa9\\${PIN}=au`]) {
    assert.equal(filterCookieHeader(`s=1; ${pair}`, (n) => !isPin(n), isPin), "s=1", pair);
  }
  // ASP.NET Core would read `rence` here, which the allow-list refuses: the pair stays.
  const utf8 = "pr\xc3\xa9f\xc3\xa9rence"; // préférence as the header's octets
  const allowed = (name: string) => (name === utf8 || name === "s") && !isPin(name);
  assert.equal(filterCookieHeader(`${utf8}=fr; s=1`, allowed, isPin), `${utf8}=fr; s=1`);
});

// Python's SimpleCookie (Bottle, aiohttp) takes a bare `secure` after a pair as an attribute and
// reads on, ends a pair at a space, and stops at the `"` without dropping what it read: in
// `a=x secure __Host-vestibule-region=au"` it finds the pin. ASP.NET's reading does not (the `"`
// ends nothing it can parse), so only the space-separated reading stands between it and the app.
Deno.test("pin leak: a pin after a bare word (Python's `secure` flag) in a ';' piece is dropped", () => {
  const pin = "__Host-vestibule-region";
  const notPin = (name: string) => name !== pin;
  for (const piece of [`a=x secure ${pin}=au"`, `a=x junk ${pin}=au"`, `a=x httponly ${pin}=au)`]) {
    assert.equal(filterCookieHeader(`s=1; ${piece}`, notPin), "s=1", piece);
  }
});
