import assert from "node:assert/strict";
import { asTypedText } from "./wire_text.ts";

// explain shows header octets that are not UTF-8 as they are, not as U+FFFD.
Deno.test("asTypedText() leaves octets that are not UTF-8 as they are", () => {
  assert.equal(asTypedText("caf\xe9"), "caf\xe9");
  assert.equal(asTypedText("caf\xc3\xa9"), "café");
});
