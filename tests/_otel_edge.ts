/**
 * @module Subprocess for `tracing_test.ts`: vestibule in front of `UPSTREAM`, run with Deno's
 * OpenTelemetry on. Prints `PORT <n>` on stderr, and shuts down on SIGTERM so Deno flushes its
 * spans on the way out.
 */
import { createApp } from "../app.ts";
import { parseRules } from "../lib/load_rules.ts";

const config = parseRules(
  JSON.stringify({
    regions: { us: { origin: Deno.env.get("UPSTREAM") } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  }),
  { env: () => undefined },
);
const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: ({ port }) => console.error(`PORT ${port}`) },
  createApp({ config, log: () => {} }).fetch,
);
Deno.addSignalListener("SIGTERM", () => server.shutdown());
await server.finished;
