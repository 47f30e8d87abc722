/** @module Writes `rules.test.schema.json`, so editors validate and complete route-table test files. */
import { routeCasesJsonSchema } from "../lib/route_cases_schema.ts";

if (import.meta.main) {
  const path = Deno.args[0] ?? "rules.test.schema.json";
  await Deno.writeTextFile(path, routeCasesJsonSchema());
  console.log(`Wrote ${path}`);
}
