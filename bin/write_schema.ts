/** @module Writes `rules.schema.json` from the zod schema, so editors validate and complete rules files. */
import { z } from "zod";
import { rulesFileSchema } from "../lib/rules_schema.ts";

/** The JSON Schema text for `rules.json`. */
export function rulesJsonSchema(): string {
  const schema = z.toJSONSchema(rulesFileSchema, { io: "input", unrepresentable: "any" });
  return JSON.stringify(acceptEnvReferences(schema), null, 2) + "\n";
}

/** A string holding a `${NAME}` reference (the grammar of `lib/env_refs.ts`). */
const ENV_REFERENCE = { type: "string", pattern: "\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" };

/** The shortest reference, to test what a string's constraints would make of one. */
const SHORTEST_REFERENCE = "${A}";

/** Whether a string schema's constraints refuse a value that is only a `${NAME}` reference. */
function refusesReference(node: Record<string, unknown>): boolean {
  const { pattern, minLength, maxLength, format } = node;
  // A list of values (`"status": "2xx"`) or one value: start-up substitutes before it compares.
  return "enum" in node || "const" in node || format !== undefined ||
    (typeof pattern === "string" && !new RegExp(pattern, "u").test(SHORTEST_REFERENCE)) ||
    (typeof minLength === "number" && minLength > SHORTEST_REFERENCE.length) ||
    (typeof maxLength === "number" && maxLength < SHORTEST_REFERENCE.length);
}

/**
 * The schema describes the file as written, before `${NAME}` substitution, but zod's constraints
 * are for the substituted value: `"key": "${OCAP_KEY}"` (11 characters) failed `minLength: 16` in
 * every editor. A string whose constraints or list of values refuse a reference also accepts any
 * text holding one; start-up still checks the value it stands for. Keys are never substituted.
 */
function acceptEnvReferences<T>(node: T): T {
  if (Array.isArray(node)) return node.map(acceptEnvReferences) as T;
  if (node === null || typeof node !== "object") return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    // A map's keys (query, JSON and form fields, upstream ids; zod writes propertyNames for each)
    // are never substituted, and start-up refuses one holding a reference: so does the schema.
    out[key] = key === "propertyNames" ? withoutReference(value) : acceptEnvReferences(value);
  }
  if (out.type !== "string" || !refusesReference(out)) return out as T;
  const { description, default: fallback, ...constrained } = out;
  return {
    ...(description === undefined ? {} : { description }),
    ...(fallback === undefined ? {} : { default: fallback }),
    anyOf: [constrained, ENV_REFERENCE],
  } as T;
}

/** A key schema that also refuses a key holding `${`, unless its own pattern refuses one. */
function withoutReference(names: unknown): unknown {
  const { pattern } = names as { pattern?: unknown };
  if (typeof pattern === "string" && !new RegExp(pattern, "u").test(SHORTEST_REFERENCE)) {
    return names;
  }
  return { ...(names as Record<string, unknown>), not: { pattern: "\\$\\{" } };
}

if (import.meta.main) {
  const path = Deno.args[0] ?? "rules.schema.json";
  await Deno.writeTextFile(path, rulesJsonSchema());
  console.log(`Wrote ${path}`);
}
