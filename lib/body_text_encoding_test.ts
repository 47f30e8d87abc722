import assert from "node:assert/strict";
import { encodeBodyText } from "./body_text_encoding.ts";

Deno.test("encodeBodyText() writes the bytes a client sends in the declared charset", async (t) => {
  const bytes = (text: string, type: string | null) => [...encodeBodyText(text, type)];
  await t.step("UTF-8 without a charset, or with one the router does not know", () => {
    assert.deepEqual(bytes("é", null), [0xc3, 0xa9]);
    assert.deepEqual(bytes("é", "text/plain; charset=no-such-thing"), [0xc3, 0xa9]);
    // The Encoding Standard's replacement decoder: the router reads no text from it either.
    assert.deepEqual(bytes("é", "text/plain; charset=iso-2022-kr"), [0xc3, 0xa9]);
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

Deno.test("encodeBodyText() writes every byte of a single-byte charset, NUL included", () => {
  // A route-table case may hold "\u0000": the router decodes byte 0x00 to it, so a client sends it.
  assert.deepEqual([...encodeBodyText("a\u0000b", "text/plain; charset=iso-8859-1")], [
    0x61,
    0x00,
    0x62,
  ]);
});

Deno.test("encodeBodyText() refuses U+FFFD in a charset with bytes it does not map", () => {
  // ISO-8859-8 leaves 0xA1 unmapped (it decodes to U+FFFD); no byte of it means U+FFFD.
  assert.throws(
    () => encodeBodyText("\uFFFD", "text/plain; charset=iso-8859-8"),
    { name: "TypeError", message: "Cannot write U+FFFD in a body of charset iso-8859-8" },
  );
});

Deno.test("encodeBodyText() names a character outside the BMP by its code point, not a surrogate", () => {
  assert.throws(
    () => encodeBodyText("ok 😀", "text/plain; charset=iso-8859-1"),
    { name: "TypeError", message: "Cannot write U+1F600 in a body of charset windows-1252" },
  );
});

Deno.test("encodeBodyText() refuses each multi-byte charset by name, even for ASCII text", async (t) => {
  for (
    const charset of ["gbk", "gb18030", "big5", "euc-jp", "iso-2022-jp", "shift_jis", "euc-kr"]
  ) {
    await t.step(charset, () => {
      assert.throws(
        () => encodeBodyText("abc", `text/plain; charset=${charset}`),
        {
          name: "TypeError",
          message:
            `Cannot write a body in charset ${charset}: only UTF-8, UTF-16 and single-byte charsets`,
        },
      );
    });
  }
});
