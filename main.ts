/** @module Entry point: reads the environment and the rules file, opens KV, serves the app. */
import { createApp } from "./app.ts";
import { bufferedLineWriter } from "./lib/line_writer.ts";
import { loadRules } from "./lib/load_rules.ts";

const rulesPath = Deno.env.get("VESTIBULE_RULES") ?? "./rules.json";
const config = await loadRules(rulesPath, (name) => Deno.env.get(name));
const app = createApp({
  config,
  log: bufferedLineWriter(),
  metricsToken: Deno.env.get("VESTIBULE_METRICS_TOKEN"),
});

/** `deno serve` (and `deno serve --parallel`) use this; `deno run` listens below. */
export default { fetch: app.fetch };

if (import.meta.main) {
  Deno.serve({ port: Number(Deno.env.get("PORT") ?? 8000) }, app.fetch);
}
