import assert from "node:assert/strict";
import { mediaTypeParameter } from "./request_body.ts";

Deno.test("mediaTypeParameter() reads parameters pair by pair, as Python's email does", () => {
  const charset = (type: string) => mediaTypeParameter(type, "charset");
  assert.equal(charset("text/plain; charset=iso-8859-1"), "iso-8859-1");
  assert.equal(charset('text/plain; Charset="ISO-8859-1"'), "ISO-8859-1");
  assert.equal(charset('text/plain; x="; charset=utf-16le"'), undefined);
  assert.equal(charset('text/plain; x="a\\"; charset=b"; charset=utf-8'), "utf-8");
  assert.equal(charset("text/plain; x; charset=latin1"), "latin1");
  assert.equal(charset('text/plain; x="open; charset=latin1'), undefined);
  assert.equal(charset("text/plain"), undefined);
});

Deno.test("CPU exhaustion: mediaTypeParameter() reads a 64 KB Content-Type of empty parameters in linear time", () => {
  const fastest = (value: string) => {
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      mediaTypeParameter(value, "charset");
      best = Math.min(best, performance.now() - started);
    }
    return best;
  };
  // Same length and number of `;`; searching the rest for `=` from every `;` took 28 times as long.
  const usual = fastest("text/plain" + "; a=b".repeat(12_800));
  const empty = fastest("text/plain" + ";".repeat(63_997) + "a=b");
  assert.ok(empty < 10 * usual + 5, `${empty.toFixed(1)} ms vs ${usual.toFixed(1)} ms`);
});
