import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parseRules } from "../lib/load_rules.ts";

const schema = JSON.parse(
  await Deno.readTextFile(new URL("../rules.schema.json", import.meta.url)),
);
const validate = new Ajv2020({ strict: false, allErrors: true }).compile(schema);

Deno.test("rules.schema.json refuses an origin header value start-up refuses (a character above U+FFFF)", () => {
  const written = {
    regions: {
      au: { origin: "http://au.internal", headers: { "X-Team": "rocket 🚀" } },
      us: { origin: "http://us.internal" },
    },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  };
  assert.throws(() => parseRules(JSON.stringify(written), { env: () => undefined }));
  // ajv tests `pattern` with the `u` flag: the emoji is one code point above U+FFFF, outside
  // [\u0100-\uffff]; zod tests without it and sees two surrogates inside that range.
  assert.equal(validate(written), false, "the schema accepts what start-up refuses");
});
