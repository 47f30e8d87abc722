import assert from "node:assert/strict";
import fc from "fast-check";
import { cookieValue, filterCookieHeader } from "./cookies.ts";

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
  assert.equal(filterCookieHeader("s=1; junk, pin=au", notPin), "s=1", "comma before the '='");
  assert.equal(filterCookieHeader("s=1;\x85pin=au;\x1c pin =x", notPin), "s=1", "Python's spaces");
  assert.equal(filterCookieHeader("a=c pin=au; b=c\tpin = au; s=1", notPin), "s=1", "SimpleCookie");
  assert.equal(
    filterCookieHeader('a = 1; q="x y"', (n) => n === "a" || n === "q"),
    'a = 1; q="x y"',
  );
  assert.equal(cookieValue("s=1;\x85pin=au", "pin"), "au", "read as the pin it is stripped as");
});

Deno.test("filterCookieHeader() cookie smuggling: no split on ; or , finds a refused name in what it keeps (property)", () => {
  // Headers made of the pieces a smuggler has: names, the refused one among them, and separators.
  const header = fc.array(fc.constantFrom("a", "pin", "PIN", "=", ";", ",", " ", "\t", "1", '"'), {
    maxLength: 30,
  }).map((parts) => parts.join(""));
  fc.assert(
    fc.property(header, (text) => {
      const out = filterCookieHeader(text, (name) => name.toLowerCase() !== "pin");
      // Split as Rack (`;` and `,`) and Python's SimpleCookie (also spaces, `=` padded) split.
      const pairs = out?.replace(/\s*=\s*/g, "=").split(/[;,\s]+/) ?? [];
      for (const part of pairs) {
        const at = part.indexOf("=");
        if (at !== -1) assert.notEqual(part.slice(0, at).toLowerCase(), "pin", out);
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("filterCookieHeader() never lets a refused name through, whatever the header, split on ; or , (property)", () => {
  fc.assert(fc.property(fc.string(), fc.string({ minLength: 1 }), (header, refused) => {
    const out = filterCookieHeader(header, (name) => name !== refused.trim());
    // Not even to a parser that also splits on commas (RFC 2109, Rack).
    for (const piece of out?.split(/[;,]/) ?? []) {
      if (!piece.includes("=")) continue;
      assert.notEqual(piece.slice(0, piece.indexOf("=")).trim(), refused.trim());
    }
  }));
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
