import assert from "node:assert/strict";
import { encodeBodyText } from "./body_text_encoding.ts";

Deno.test("encodeBodyText() writes the bytes a client sends in the declared charset", async (t) => {
  const bytes = (text: string, type: string | null) => [...encodeBodyText(text, type)];
  await t.step("UTF-8 without a charset, or with one the router does not know", () => {
    assert.deepEqual(bytes("é", null), [0xc3, 0xa9]);
    assert.deepEqual(bytes("é", "text/plain; charset=no-such-thing"), [0xc3, 0xa9]);
  });
  await t.step("single-byte charsets, by the table the router decodes with", () => {
    // TextDecoder reads the label iso-8859-1 as windows-1252, where € is 0x80.
    assert.deepEqual(bytes("José €", "text/plain; charset=ISO-8859-1"), [
      0x4a,
      0x6f,
      0x73,
      0xe9,
      0x20,
      0x80,
    ]);
    assert.deepEqual(bytes("Ж", "text/plain; charset=koi8-r"), [0xf6]);
  });
  await t.step("UTF-16 in either byte order", () => {
    assert.deepEqual(bytes("é", "text/plain; charset=utf-16le"), [0xe9, 0x00]);
    assert.deepEqual(bytes("é", "text/plain; charset=utf-16be"), [0x00, 0xe9]);
  });
  await t.step("a character the charset cannot hold, or a charset it cannot write: refused", () => {
    assert.throws(
      () => encodeBodyText("東京", "text/plain; charset=iso-8859-1"),
      /Cannot write U\+6771 in a body of charset windows-1252/,
    );
    assert.throws(
      () => encodeBodyText("東京", "text/plain; charset=shift_jis"),
      /Cannot write a body in charset shift_jis/,
    );
  });
});
