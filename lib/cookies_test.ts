import assert from "node:assert/strict";
import fc from "fast-check";
import { filterCookieHeader } from "./cookies.ts";

Deno.test("filterCookieHeader() keeps the chosen pairs byte for byte", () => {
  assert.equal(filterCookieHeader("a=1; b=2; c=3", (n) => n !== "b"), "a=1; c=3");
  assert.equal(filterCookieHeader('a="x y"; b=%ZZ', () => true), 'a="x y"; b=%ZZ');
  assert.equal(filterCookieHeader("a=1", () => false), undefined);
  assert.equal(filterCookieHeader(null, () => true), undefined);
  assert.equal(filterCookieHeader(" ; garbage ;=x; a=1 ", () => true), "a=1");
});

Deno.test("filterCookieHeader() never lets a refused name through, whatever the header (property)", () => {
  fc.assert(fc.property(fc.string(), fc.string({ minLength: 1 }), (header, refused) => {
    const out = filterCookieHeader(header, (name) => name !== refused.trim());
    for (const piece of out?.split(";") ?? []) {
      assert.notEqual(piece.slice(0, piece.indexOf("=")).trim(), refused.trim());
    }
  }));
});
