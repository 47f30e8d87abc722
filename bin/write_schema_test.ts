import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parseRules } from "../lib/load_rules.ts";
import { routeCasesJsonSchema } from "../lib/route_cases_schema.ts";
import { rulesJsonSchema } from "./write_schema.ts";

const root = new URL("../", import.meta.url);
const schema = JSON.parse(await Deno.readTextFile(new URL("rules.schema.json", root)));
// strict: false: the schema carries zod's `default`s and descriptions, which Ajv need not check.
const validate = new Ajv2020({ strict: false, allErrors: true }).compile(schema);

/** Any `${NAME}` stands for a value start-up accepts wherever it is used. */
const env = (name: string) =>
  ({
    OCAP_KEY: "k".repeat(32),
    OCAP_PATH: "/_ocap",
    PIN_COOKIE: "vestibule-region",
    PIN_HEADER: "x-region",
    GEO_HEADER: "cf-ipcountry",
    LOGIN_STATUS: "3xx",
  })[name] ?? `http://${name.toLowerCase()}.internal`;

function file(extra: Record<string, unknown> = {}, rules: unknown[] = []) {
  return {
    regions: { au: { origin: "${AU_ORIGIN}" }, us: { origin: "${US_ORIGIN}" } },
    default_region: "us",
    rules: [...rules, { name: "app", type: "regional" }],
    ...extra,
  };
}

function schemaErrors(value: unknown): string {
  return validate(value) ? "" : JSON.stringify(validate.errors);
}

Deno.test("rulesJsonSchema() matches the committed rules.schema.json", async () => {
  const committed = await Deno.readTextFile(new URL("rules.schema.json", root));
  assert.equal(committed, rulesJsonSchema(), "run: deno task schema");
});

Deno.test("rules.schema.json accepts the rules files start-up accepts", async (t) => {
  const files = [new URL("rules.json", root), new URL("tests/fixtures/ocap/rules.json", root)];
  for await (const entry of Deno.readDir(new URL("tests/fixtures/rules/", root))) {
    if (entry.name.endsWith(".json") && !entry.name.endsWith(".test.json")) {
      files.push(new URL(`tests/fixtures/rules/${entry.name}`, root));
    }
  }
  for (const url of files) {
    const text = await Deno.readTextFile(url);
    try {
      parseRules(text, { env });
    } catch {
      continue; // a fixture of a refusal
    }
    await t.step(url.pathname.slice(root.pathname.length), () => {
      assert.equal(schemaErrors(JSON.parse(text)), "");
    });
  }
});

Deno.test("rules.schema.json editor noise: a `${NAME}` where the value has a pattern, a length or a list of values is accepted, as start-up accepts it", () => {
  // `"key": "${OCAP_KEY}"` is what docs/ocap.md shows; it was 11 characters against minLength 16.
  const written = file({
    ocap: { key: "${OCAP_KEY}", path: "${OCAP_PATH}", targets: { p: { origin: "${P_ORIGIN}" } } },
    pin: { cookie: "${PIN_COOKIE}", header: "${PIN_HEADER}" },
    geo: { header: "${GEO_HEADER}" },
  }, [{
    name: "login",
    type: "broadcast",
    match: { methods: ["POST"] },
    success: { status: "${LOGIN_STATUS}" },
  }]);
  assert.ok(parseRules(JSON.stringify(written), { env }).ocap);
  assert.equal(schemaErrors(written), "");
  // Still refused without a reference.
  assert.notEqual(schemaErrors(file({ pin: { cookie: "bad cookie" } })), "");
  assert.notEqual(schemaErrors(file({ ocap: { key: "short", targets: {} } })), "");
});

Deno.test("rules.schema.json refuses what start-up refuses where JSON Schema can say it", async (t) => {
  const cases: [string, Record<string, unknown>][] = [
    ["a redirect status that is not a redirect", {
      name: "r",
      type: "global",
      redirect: { location: "/x", status: 200 },
    }],
    ["a global rule with both upstream and redirect", {
      name: "r",
      type: "global",
      upstream: "website",
      redirect: { location: "/x" },
    }],
    ["a global rule with neither", { name: "r", type: "global" }],
    ["a body matcher with none of json, form, regex", {
      name: "r",
      type: "regional",
      match: { body: {} },
    }],
    ["a body matcher with two of them", {
      name: "r",
      type: "regional",
      match: { body: { json: {}, regex: "x" } },
    }],
    ["a success with no field", { name: "r", type: "broadcast", success: {} }],
    ["a success json with both equals and exists", {
      name: "r",
      type: "broadcast",
      success: { json: { path: "a", equals: 1, exists: true } },
    }],
  ];
  for (const [what, rule] of cases) {
    await t.step(what, () => {
      // A rule without a match is a catch-all, and "app" after it is refused whatever "r" says.
      const written = file({ upstreams: { website: { origin: "http://web.internal" } } }, [{
        match: { path: "^/r" },
        ...rule,
      }]);
      assert.throws(
        () => parseRules(JSON.stringify(written), { env }),
        // One problem, rule "r"'s own (not "Cannot compile rules: 2 problems").
        (error: Error) => error.message.startsWith('Cannot compile rule "r" (rules[0]): '),
      );
      assert.notEqual(schemaErrors(written), "", "the schema accepts it");
    });
  }
});

Deno.test("rules.schema.json refuses a `${NAME}` in a map's key, as start-up does (keys are never substituted)", async (t) => {
  const q = { name: "q", type: "regional" };
  const cases: [string, Record<string, unknown>][] = [
    ["match.query", file({}, [{ ...q, match: { path: "^/q$", query: { "${P}": "x" } } }])],
    [
      "match.body.json",
      file({}, [{ ...q, match: { path: "^/q$", body: { json: { "${P}": "x" } } } }]),
    ],
    [
      "match.body.form",
      file({}, [{ ...q, match: { path: "^/q$", body: { form: { "${P}": "x" } } } }]),
    ],
    ["upstreams", file({ upstreams: { "${P}": { origin: "http://web.internal" } } })],
    ["match.headers", file({}, [{ ...q, match: { path: "^/q$", headers: { "${P}": "x" } } }])],
  ];
  for (const [where, written] of cases) {
    await t.step(where, () => {
      assert.throws(() => parseRules(JSON.stringify(written), { env }), /holds a reference/);
      assert.notEqual(schemaErrors(written), "", "the schema accepts a key start-up refuses");
    });
  }
});

Deno.test("deno task schema -- FILE writes the schema to FILE, leaving rules.schema.json alone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "write_schema_test_" });
  try {
    const path = `${dir}/schema.json`;
    const { code, stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "schema", path],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.equal(code, 0);
    assert.equal(new TextDecoder().decode(stdout), `Wrote ${path}\n`);
    assert.equal(await Deno.readTextFile(path), rulesJsonSchema());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs a schema script in `cwd` without arguments, or with FILE; returns its exit and stdout. */
async function writeSchemaIn(cwd: string, script: string, args: string[] = []) {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", new URL(script, root).pathname, ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return { code, stdout: new TextDecoder().decode(stdout) };
}

Deno.test("the schema scripts write the file the rules files' $schema names, or FILE", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "write_schema_test_" });
  try {
    await t.step("bin/write_schema.ts without FILE writes rules.schema.json", async () => {
      assert.deepEqual(await writeSchemaIn(dir, "bin/write_schema.ts"), {
        code: 0,
        stdout: "Wrote rules.schema.json\n",
      });
      assert.equal(await Deno.readTextFile(`${dir}/rules.schema.json`), rulesJsonSchema());
    });
    await t.step(
      "bin/write_test_schema.ts without FILE writes rules.test.schema.json",
      async () => {
        assert.deepEqual(await writeSchemaIn(dir, "bin/write_test_schema.ts"), {
          code: 0,
          stdout: "Wrote rules.test.schema.json\n",
        });
        assert.equal(
          await Deno.readTextFile(`${dir}/rules.test.schema.json`),
          routeCasesJsonSchema(),
        );
      },
    );
    await t.step("bin/write_test_schema.ts FILE", async () => {
      const file = `${dir}/cases.json`;
      assert.deepEqual(await writeSchemaIn(dir, "bin/write_test_schema.ts", [file]), {
        code: 0,
        stdout: `Wrote ${file}\n`,
      });
      assert.equal(await Deno.readTextFile(file), routeCasesJsonSchema());
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
