import assert from "node:assert/strict";
import fc from "fast-check";
import { HeaderList } from "./header_list.ts";

Deno.test("HeaderList.get() answers as Headers.get() does, repeated headers included (property)", () => {
  const name = fc.constantFrom("cookie", "Cookie", "x-a", "X-A", "accept", "set-cookie", "host");
  const value = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/);
  fc.assert(fc.property(fc.array(fc.tuple(name, value), { maxLength: 8 }), (pairs) => {
    const headers = new Headers();
    for (const [n, v] of pairs) headers.append(n, v);
    const list = new HeaderList(headers);
    for (const n of ["cookie", "x-a", "accept", "host", "missing"]) {
      assert.equal(list.get(n), headers.get(n), n);
    }
    assert.ok(list.pairs.every(([n]) => n === n.toLowerCase()));
  }));
});
