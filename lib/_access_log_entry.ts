/** @module Test helper: an access-log entry with only what the metrics tests vary. */
import type { AccessLogEntry } from "./access_log.ts";

/** An entry for `VestibuleMetrics.record()`, as the observer would build it. */
export function logEntry(status: number, route: AccessLogEntry["route"]): AccessLogEntry {
  return {
    time: 0,
    requestId: "r",
    method: "GET",
    host: "h",
    path: "/",
    status,
    totalMs: route.upstreamMs ?? 1,
    route,
  };
}
