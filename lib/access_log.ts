/**
 * @module The access-log line: one JSON object per request, built only from fields chosen here,
 * so no header, cookie, query string or body can reach the log by accident.
 */
import type { RouteLog } from "./route_context.ts";

/** What is known about a finished request; the metrics are recorded from the same entry. */
export interface AccessLogEntry {
  /** When the request arrived, in milliseconds since the epoch. */
  time: number;
  requestId: string;
  method: string;
  /** The `Host` the client sent. */
  host: string;
  /** The URL path only: the query string may carry tokens and is never logged. */
  path: string;
  status: number;
  /** Time from arrival to the response headers, in milliseconds. */
  totalMs: number;
  /** Response body size from `Content-Length`; absent when the body is streamed without one. */
  bytes?: number;
  /** What the route processors recorded: rule, region and why, upstream, outcome. */
  route: RouteLog;
}

/** The longest host or path written to a log line; longer ones are cut and marked with `…`. */
const MAX_FIELD_LENGTH = 512;

/**
 * Renders the entry as one JSON line. Keys are snake_case and always in the same order; fields
 * that do not apply (no region for a global rule, no upstream time for a redirect) are left out.
 */
export function accessLogLine(entry: AccessLogEntry): string {
  const { route } = entry;
  return JSON.stringify({
    time: isoTime(entry.time),
    msg: "request",
    request_id: entry.requestId,
    method: entry.method,
    host: clip(entry.host),
    path: clip(entry.path),
    rule: route.rule,
    type: route.type,
    region: route.region,
    region_reason: route.regionReason,
    upstream: route.upstream,
    status: entry.status,
    upstream_ms: route.upstreamMs === undefined ? undefined : tenths(route.upstreamMs),
    total_ms: tenths(entry.totalMs),
    bytes: entry.bytes,
    outcome: route.outcome,
    error: route.error,
    regions: route.regions?.map((r) => ({ ...r, ms: tenths(r.ms) })),
  });
}

let lastTime = Number.NaN;
let lastIso = "";

/** `toISOString()`, remembered for the last millisecond: under load many lines share one. */
function isoTime(time: number): string {
  if (time !== lastTime) {
    lastTime = time;
    lastIso = new Date(time).toISOString();
  }
  return lastIso;
}

/** Milliseconds to a tenth: finer is noise, coarser hides loopback-fast upstreams. */
function tenths(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function clip(value: string): string {
  return value.length > MAX_FIELD_LENGTH ? `${value.slice(0, MAX_FIELD_LENGTH)}…` : value;
}
