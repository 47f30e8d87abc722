/**
 * Config drift: an operator writes `rules.json`, `rules.test.json` and the sync config from the
 * README and docs/, so a field the schema gains, renames or re-defaults must show there too.
 * These checks read names and defaults from the zod schemas themselves, not from a list here.
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { parseRules } from "../lib/load_rules.ts";
import { routeCasesFileSchema } from "../lib/route_cases_schema.ts";
import { ocapSchema, originSchema, rulesFileSchema } from "../lib/rules_schema.ts";
import { SyncConfigSchema } from "../sync/config.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

type JsonSchema = {
  properties?: Record<string, JsonSchema & { default?: unknown }>;
  required?: string[];
  [key: string]: unknown;
};

const jsonSchema = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchema;

/** Every property name anywhere in a JSON Schema. */
function propertyNames(node: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(node)) node.forEach((item) => propertyNames(item, out));
  else if (node !== null && typeof node === "object") {
    for (const [key, value] of Object.entries(node)) {
      if (key === "properties") Object.keys(value as object).forEach((name) => out.add(name));
      propertyNames(value, out);
    }
  }
  return out;
}

/** Names the docs spell as a field: in a code span (`name`, `name: x`) or as a JSON key. */
function undocumented(names: Iterable<string>, docs: string): string[] {
  return [...names].filter((name) =>
    name !== "$schema" && !docs.includes(`\`${name}\``) && !docs.includes(`\`${name}:`) &&
    !docs.includes(`"${name}"`)
  );
}

Deno.test("config drift: every field a config file accepts is named in the docs", async (t) => {
  const docs = (await Promise.all(
    ["README.md", "docs/operations.md", "docs/ocap.md", "docs/observability.md"].map(read),
  )).join("\n");

  await t.step("rules.json (README, docs/)", () => {
    assert.deepEqual(undocumented(propertyNames(jsonSchema(rulesFileSchema)), docs), []);
  });
  await t.step("rules.test.json (docs/operations.md)", async () => {
    const operations = await read("docs/operations.md");
    assert.deepEqual(undocumented(propertyNames(jsonSchema(routeCasesFileSchema)), operations), []);
  });
  await t.step("the sync config (sync/README.md)", async () => {
    const sync = await read("sync/README.md");
    assert.deepEqual(undocumented(propertyNames(jsonSchema(SyncConfigSchema)), sync), []);
  });
});

/** The README's rules-file table: field (first cell, one code span) → default cell. */
async function readmeRulesTable(): Promise<Map<string, string>> {
  const readme = await read("README.md");
  const section = readme.split("\n## The rules file\n")[1]?.split("\n### ")[0] ?? "";
  const rows = new Map<string, string>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").slice(1, -1).map((cell) => cell.trim());
    if (cells.length === 3 && !cells[1].startsWith("-") && cells[1] !== "default") {
      rows.set(cells[0], cells[1]);
    }
  }
  return rows;
}

Deno.test("config drift: the README's rules-file table gives every top-level field the schema's default", async (t) => {
  const rows = await readmeRulesTable();
  const schema = jsonSchema(rulesFileSchema);
  const fields = Object.keys(schema.properties!).filter((name) => name !== "$schema");

  await t.step("one row per field, and no row for a field that is gone", () => {
    const named = [...rows.keys()].filter((cell) => /^`[a-z_]+`$/.test(cell));
    assert.deepEqual(named.map((cell) => cell.slice(1, -1)).sort(), [...fields].sort());
  });

  for (const field of fields) {
    await t.step(field, () => {
      const cell = rows.get(`\`${field}\``)!;
      const property = schema.properties![field];
      if (schema.required!.includes(field)) return assert.equal(cell, "required");
      if (!("default" in property)) return assert.equal(cell, "absent");
      const fallback = property.default;
      if (fallback === null || typeof fallback !== "object" || Object.keys(fallback).length === 0) {
        // A scalar or an empty map/list: written as its JSON.
        return assert.equal(cell, `\`${JSON.stringify(fallback)}\``);
      }
      // An object: each string it holds is spelt out (numbers may be prose, `1 year`).
      const strings = Object.values(fallback).filter((v) => typeof v === "string");
      assert.deepEqual(strings.filter((s) => !cell.includes(`\`${s}\``)), []);
    });
  }

  await t.step("origin timeout_ms", () => {
    const fallback = jsonSchema(originSchema).properties!.timeout_ms.default;
    assert.equal(rows.get("origin `timeout_ms`"), `\`${fallback}\``);
  });
});

Deno.test("config drift: docs/ocap.md's configuration block says the schema's defaults", async () => {
  const doc = await read("docs/ocap.md");
  const block = doc.split("```jsonc\n")[1].split("```")[0];
  const said = [...block.matchAll(/^[ \t]*"(\w+)": ([^,\n]+),[ \t]*\/\/ default\b/gm)];
  assert.ok(said.length >= 2, "docs/ocap.md marks its defaults with // default");
  const properties = jsonSchema(ocapSchema).properties!;
  for (const [, field, value] of said) {
    assert.deepEqual(JSON.parse(value), properties[field].default, `ocap.${field}`);
  }
});

const env = () => undefined;
const rulesWith = (extra: Record<string, unknown>, rule: Record<string, unknown> = {}) =>
  JSON.stringify({
    regions: { us: { origin: "http://us.test" } },
    upstreams: { website: { origin: "http://website.test" } },
    default_region: "us",
    rules: [
      { name: "site", type: "global", match: { path: "^/about$" }, upstream: "website", ...rule },
      { name: "app", type: "regional" },
    ],
    ...extra,
  });

Deno.test("parseRules() refuses an empty cookie name in a rule's forward_cookies, as at the top level", async (t) => {
  await t.step("top level (refused on main too)", () => {
    assert.throws(
      () => parseRules(rulesWith({ forward_cookies: [""] }), { env }),
      /forward_cookies\.0: Too small/,
    );
  });
  await t.step("a global rule's own list", () => {
    assert.throws(
      () => parseRules(rulesWith({}, { forward_cookies: [""] }), { env }),
      /rule "site" \(rules\[0\]\): forward_cookies\.0: Too small/,
    );
  });
});

Deno.test("parseRules() says what ocap.path refuses: a segment starting with a dot", () => {
  const ocap = {
    path: "/.ocap",
    key: "k".repeat(16),
    targets: { g: { origin: "https://g.test" } },
  };
  assert.throws(
    () => parseRules(rulesWith({ ocap }), { env }),
    (error: Error) => {
      // On main: "… (no . or .. segment) …", which "/.ocap" is not.
      assert.match(error.message, /ocap\.path: .*none starting with \./);
      return true;
    },
  );
});
