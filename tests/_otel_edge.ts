/**
 * @module Subprocess for `tracing_test.ts`: vestibule in front of `UPSTREAM` (the only region, and
 * OCAP's `provider` target), run with Deno's OpenTelemetry on. Prints `PORT <n>` on stderr, and
 * shuts down on SIGTERM so Deno flushes its spans on the way out.
 */
import { createApp } from "../app.ts";
import { parseRules } from "../lib/load_rules.ts";
import { OCAP_ENV, ocapRules } from "./_ocap.ts";

const upstream = Deno.env.get("UPSTREAM")!;
const rules = {
  ...ocapRules(upstream) as object,
  regions: { us: { origin: upstream } },
  rules: [{ name: "app", type: "regional" }],
};
const config = parseRules(JSON.stringify(rules), {
  env: (name) => (OCAP_ENV as Record<string, string>)[name],
});
const kv = await Deno.openKv(":memory:");
const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: ({ port }) => console.error(`PORT ${port}`) },
  createApp({ config, kv, log: () => {} }).fetch,
);
Deno.addSignalListener("SIGTERM", () => server.shutdown());
await server.finished;
kv.close();
