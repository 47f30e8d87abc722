/** @module Deno.bench: the per-request pieces of observability, to see which one costs what. */
import { type AccessLogEntry, accessLogLine } from "../lib/access_log.ts";
import { bufferedLineWriter } from "../lib/line_writer.ts";
import { VestibuleMetrics } from "../lib/metrics.ts";
import { requestId } from "../lib/request_id.ts";
import { annotateSpan } from "../lib/tracing.ts";

const entry: AccessLogEntry = {
  time: Date.now(),
  requestId: crypto.randomUUID(),
  method: "GET",
  host: "app.example.com",
  path: "/dashboard/overview",
  status: 200,
  totalMs: 1.234,
  bytes: 256,
  route: {
    rule: "app",
    type: "regional",
    region: "au",
    regionReason: "pin cookie",
    upstreamMs: 0.987,
  },
};
const metrics = new VestibuleMetrics();
const sink = {
  write: (bytes: Uint8Array) => Promise.resolve(bytes.length),
  writeSync: (bytes: Uint8Array) => bytes.length,
};
const write = bufferedLineWriter(sink);
const line = accessLogLine(entry);

Deno.bench("requestId() for a request without one", () => {
  requestId(null);
});
Deno.bench("accessLogLine()", () => {
  accessLogLine(entry);
});
Deno.bench("bufferedLineWriter() one line", () => {
  write(line);
});
Deno.bench("metrics.record()", () => {
  metrics.record(entry);
});
Deno.bench("annotateSpan() with OpenTelemetry off", () => {
  annotateSpan(entry.requestId, entry.route);
});
Deno.bench("performance.now() twice and Date.now()", () => {
  performance.now();
  performance.now();
  Date.now();
});
