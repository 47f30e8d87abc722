/** @module Writes `rules.schema.json` from the zod schema, so editors validate and complete rules files. */
import { z } from "zod";
import { rulesFileSchema } from "../lib/rules_schema.ts";

/** The JSON Schema text for `rules.json`. */
export function rulesJsonSchema(): string {
  const schema = z.toJSONSchema(rulesFileSchema, { io: "input", unrepresentable: "any" });
  return JSON.stringify(schema, null, 2) + "\n";
}

if (import.meta.main) {
  const path = Deno.args[0] ?? "rules.schema.json";
  await Deno.writeTextFile(path, rulesJsonSchema());
  console.log(`Wrote ${path}`);
}
