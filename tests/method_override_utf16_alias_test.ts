/**
 * Method confusion through a broadcast form in UTF-16 named by a label the edge's list of
 * ASCII-incompatible charsets misses (f2feea9). ASP.NET Core's form reader decodes a form in the
 * charset its Content-Type names (`Encoding.GetEncoding`: `unicode`, `iso-10646-ucs-2` are
 * UTF-16LE, `unicodeFFFE` UTF-16BE; Java's Charset.forName takes `UnicodeLittleUnmarked`,
 * `UTF_16`), so its HttpMethodOverride with FormFieldName `_method` runs the POST as a PUT; the
 * edge reads the bytes as UTF-8, finds no `_method` and forwards it.
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

function utf16le(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    out[2 * i] = text.charCodeAt(i) & 0xff;
    out[2 * i + 1] = text.charCodeAt(i) >> 8;
  }
  return out;
}

function utf16be(text: string): Uint8Array<ArrayBuffer> {
  const le = utf16le(text);
  const out = new Uint8Array(le.length);
  for (let i = 0; i < le.length; i += 2) [out[i], out[i + 1]] = [le[i + 1], le[i]];
  return out;
}

Deno.test("method confusion: a broadcast UTF-16 form under another charset label names its _method", async (t) => {
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [
      {
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/login$" },
        success: { status: [200] },
      },
      { name: "app", type: "regional" },
    ],
  });
  const form = "username=olivia&_method=PUT";
  const sent: Array<[string, Uint8Array<ArrayBuffer>]> = [
    ["unicode", utf16le(form)],
    ["iso-10646-ucs-2", utf16le(form)],
    ["unicodeFFFE", utf16be(form)],
    ["csUnicode", utf16le(form)],
    ["UnicodeLittleUnmarked", utf16le(form)],
    ["UTF_16LE", utf16le(form)],
  ];
  try {
    for (const [charset, body] of sent) {
      await t.step(`charset=${charset} with _method=PUT is refused`, async () => {
        const before = us.received.length;
        const response = await fetch(`${edge.url}/login`, {
          method: "POST",
          headers: {
            accept: "application/json",
            "content-type": `application/x-www-form-urlencoded; charset=${charset}`,
          },
          body,
        });
        const text = await response.text();
        assert.deepEqual(
          [response.status, JSON.parse(text).error],
          [400, "ambiguous_method"],
          text,
        );
        assert.equal(us.received.length, before, "a region ran the PUT");
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});
