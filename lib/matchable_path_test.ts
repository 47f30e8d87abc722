/** @module matchablePath(): the path rules see, with unreserved escapes decoded as origins read them. */
import assert from "node:assert/strict";
import { matchablePath } from "./matchable_path.ts";

Deno.test("matchablePath() rule bypass: every unreserved character's escape is decoded, as the origin reads it", async (t) => {
  // RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~"; §6.2.2.2 decodes exactly these.
  for (
    const [sent, read] of [
      ["/%61bout", "/about"],
      ["/v%31/x", "/v1/x"],
      ["/%7Estaff", "/~staff"],
      ["/%7estaff", "/~staff"],
      ["/a%2Db", "/a-b"],
      ["/a%2Eb", "/a.b"],
      ["/%5Fprivate", "/_private"],
    ]
  ) {
    await t.step(`${sent} is ${read}`, () => assert.equal(matchablePath(sent), read));
  }
});

Deno.test("matchablePath() keeps other escapes, upper-cased, and a path without escapes as it is", () => {
  assert.equal(matchablePath("/caf%c3%a9"), "/caf%C3%A9");
  assert.equal(matchablePath("/a%20b%2fc"), "/a%20b%2Fc");
  assert.equal(matchablePath("/plain/path"), "/plain/path");
});
