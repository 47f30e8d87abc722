/** @module `deno task sync:schema`: writes sync/sync.schema.json from the zod schema. */
import { z } from "zod";
import { SyncConfigSchema } from "./config.ts";

/** Where editors find the schema, next to the example config. */
export const SCHEMA_PATH = new URL("./sync.schema.json", import.meta.url);

/** The JSON Schema text for the sync config, as committed. */
export function syncConfigJsonSchema(): string {
  return JSON.stringify(z.toJSONSchema(SyncConfigSchema, { io: "input" }), null, 2) + "\n";
}

if (import.meta.main) {
  await Deno.writeTextFile(SCHEMA_PATH, syncConfigJsonSchema());
  console.log(`Wrote ${SCHEMA_PATH.pathname}`);
}
