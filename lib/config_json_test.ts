import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeConfigFile, findRepeatedKey, parseConfigJson } from "./config_json.ts";

Deno.test("findRepeatedKey() finds a key named twice in one object, and nothing else", () => {
  assert.deepEqual(findRepeatedKey('{"a":1,"a":2}'), { key: "a", line: 1 });
  assert.deepEqual(findRepeatedKey('{"a":1,"\\u0061":2}'), { key: "a", line: 1 }, "escapes");
  assert.equal(findRepeatedKey('{"o":{"a":1},"p":{"a":1}}'), undefined, "sibling objects");
  assert.equal(findRepeatedKey('[{"a":1},{"a":1}]'), undefined, "array elements");
  assert.equal(findRepeatedKey('{"a":"a","b":["a","a"],"c":"\\"a\\":"}'), undefined, "values");
  assert.deepEqual(findRepeatedKey('{\n "a" : 1 ,\n "b" : { "a" : 2 } ,\n "a" : 3 }'), {
    key: "a",
    line: 4,
  });
  // Any JSON.stringify output (unique keys, every kind of string escape) has none.
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => !findRepeatedKey(JSON.stringify(v))),
    { numRuns: 300 },
  );
});

Deno.test("parseConfigJson() names the file for bad JSON and for a key written twice", () => {
  assert.deepEqual(parseConfigJson('{"a":[1,{"b":2}]}', "x.json"), { a: [1, { b: 2 }] });
  assert.throws(() => parseConfigJson("{", 'rules file "r.json"'), {
    name: "SyntaxError",
    message: /^Cannot parse rules file "r.json": /,
  });
  assert.throws(
    () => parseConfigJson('{\n  "rules": [],\n  "rules": []\n}', 'rules file "r.json"'),
    {
      name: "SyntaxError",
      message: 'Cannot parse rules file "r.json": key "rules" appears twice in one object ' +
        "(line 3); remove one",
    },
  );
});

Deno.test("secret leak: a key written twice that is no token (a pasted header line) is not quoted", () => {
  assert.throws(
    () =>
      parseConfigJson(
        '{"a": {"Authorization: Bearer s3cr3t": 1, "Authorization: Bearer s3cr3t": 2}}',
        "rules",
      ),
    (error: Error) =>
      error instanceof SyntaxError &&
      /appears twice in one object \(line 1\)/.test(error.message) &&
      !error.message.includes("s3cr3t"),
  );
});

Deno.test("secret leak: a JSON syntax error is located, not quoted from the file", () => {
  assert.throws(
    () => parseConfigJson('{"headers": {"Cookie": s3cr3t-session}}', "rules"),
    (error: Error) =>
      error instanceof SyntaxError && /line 1 column \d+/.test(error.message) &&
      !error.message.includes("s3cr3t"),
  );
});

Deno.test("a JSON syntax error names the line and column of the offending character", () => {
  // `x` is the 7th character of line 1; on line 3 `tru` is followed by a newline at column 11.
  assert.throws(() => parseConfigJson('{"a": x}', "f"), {
    message: "Cannot parse f: Unexpected token 'x' in JSON (line 1 column 7)",
  });
  assert.throws(() => parseConfigJson('{\n  "a": 1,\n  "b": @\n}', "f"), {
    message: "Cannot parse f: Unexpected token '@' in JSON (line 3 column 8)",
  });
});

Deno.test("secret leak: a JSON syntax error never quotes the file, even where the text holds a quote and comma", () => {
  // V8: `Unexpected token 's', ...""Cookie": s3cr3t', x"... is not valid JSON`.
  assert.throws(() => parseConfigJson(`{"Cookie": s3cr3t', x}`, "f"), (error: unknown) => {
    assert.ok(error instanceof SyntaxError);
    assert.doesNotMatch(error.message, /s3cr3t/);
    assert.equal(error.message, "Cannot parse f: Unexpected token 's' in JSON (line 1 column 12)");
    return true;
  });
});

Deno.test("a rules file saved as UTF-16 big-endian is named as UTF-16, like little-endian", () => {
  const be = new Uint8Array([0xfe, 0xff, 0x00, 0x7b, 0x00, 0x7d]);
  assert.throws(() => decodeConfigFile(be, "rules file"), {
    message: "Cannot parse rules file: it is saved as UTF-16; save it as UTF-8",
  });
});
