import assert from "node:assert/strict";
import { bodyReadings, declaresUtf8, mediaTypeParameter } from "./media_type.ts";

Deno.test("mediaTypeParameter() reads a quoted value after spaces past the '=' as one value, as Django does", () => {
  // Django's _parseparam keeps the quoted `;` inside x's value: no charset. Read as a token,
  // the `"` would end x at the first `;` and the body would be decoded as UTF-16.
  assert.equal(mediaTypeParameter('text/plain; x= "; charset=utf-16le; y="', "charset"), undefined);
  assert.equal(mediaTypeParameter('text/plain; x=\t"a;b"; charset=latin1', "x"), "a;b");
});

Deno.test("bodyReadings() reads a body without Content-Type as a form for POST only, as Rack does", () => {
  assert.equal(bodyReadings(null, "POST")?.form, true);
  // Rack's form_data? is `POST && type.nil?`; PHP and Symfony parse no PUT body without a type.
  for (const method of ["PUT", "PATCH", "DELETE"]) {
    assert.equal(bodyReadings(null, method)?.form, false);
  }
});

Deno.test("declaresUtf8() takes charset=utf8, which Python decodes as UTF-8, for UTF-8", () => {
  // Else a form or json matcher silently stops matching clients that write charset=utf8.
  assert.equal(declaresUtf8("application/x-www-form-urlencoded; charset=utf8"), true);
  assert.equal(declaresUtf8("application/json; charset=UTF8"), true);
  assert.equal(declaresUtf8("application/json; charset=utf-16"), false);
  // Only UTF-8 itself: Python's utf-8-sig drops a leading BOM; utf8mb4 (MySQL's) is no codec.
  assert.equal(declaresUtf8("application/x-www-form-urlencoded; charset=utf-8-sig"), false);
  assert.equal(declaresUtf8("application/json; charset=utf8mb4"), false);
});
