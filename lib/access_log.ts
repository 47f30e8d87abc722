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
 *
 * Built by concatenation rather than `JSON.stringify` of a fresh object (0.6 µs per line in
 * `bench/observe_bench.ts`, 1.0 µs before the durations were written from integers and the
 * last whole-line scan for line breakers went), and every string still goes through
 * `JSON.stringify`, so quotes, newlines and lone surrogates are escaped exactly as before: a
 * property test compares the two byte for byte.
 */
export function accessLogLine(entry: AccessLogEntry): string {
  const { route } = entry;
  let line = `{"time":"${isoTime(entry.time)}","msg":"request","request_id":${
    quote(entry.requestId)
  },"method":${field(entry.method)},"host":${field(entry.host)},"path":${field(entry.path)}`;
  if (route.rule !== undefined) line += `,"rule":${known(route.rule)}`;
  if (route.type !== undefined) line += `,"type":${known(route.type)}`;
  if (route.region !== undefined) line += `,"region":${known(route.region)}`;
  if (route.regionReason !== undefined) line += `,"region_reason":${known(route.regionReason)}`;
  if (route.upstream !== undefined) line += `,"upstream":${known(route.upstream)}`;
  line += `,"status":${num(entry.status)}`;
  if (route.upstreamMs !== undefined) line += `,"upstream_ms":${inTenths(route.upstreamMs)}`;
  line += `,"total_ms":${inTenths(entry.totalMs)}`;
  if (entry.bytes !== undefined) line += `,"bytes":${num(entry.bytes)}`;
  if (route.outcome !== undefined) line += `,"outcome":${known(route.outcome)}`;
  if (route.error !== undefined) line += `,"error":${known(route.error)}`;
  if (route.regions !== undefined) {
    line += `,"regions":${oneLine(q(route.regions.map((r) => ({ ...r, ms: tenths(r.ms) }))))}`;
  }
  // Every part is one line already: each string went through `quote()` or `known()`.
  return `${line}}`;
}

const q = JSON.stringify as (value: unknown) => string;

/** Quoted rule, type, region, upstream, reason and outcome names; they come from the rules file. */
const quotedNames = new Map<string, string>();

/** `q()` for the values of a small, fixed set (names from the rules file and vestibule's own). */
function known(value: string): string {
  let quoted = quotedNames.get(value);
  if (quoted === undefined) {
    quoted = quote(value);
    // Bounded all the same, should a value ever come from a request.
    if (quotedNames.size < 1024) quotedNames.set(value, quoted);
  }
  return quoted;
}

/** A number as `JSON.stringify` writes it (`null` for NaN and infinities). */
function num(value: number): string {
  return Number.isFinite(value) ? String(value) : "null";
}

let lastSecond = Number.NaN;
let secondPrefix = "";
/** Year 10000: from there on `toISOString()` writes a six-digit year. */
const YEAR_10000 = 253402300800000;

/**
 * `toISOString()` without calling it per line: the `YYYY-MM-DDTHH:MM:SS` part is remembered for
 * the current second and the milliseconds appended (lines finish out of order, so a cache of
 * the last millisecond alone missed most of the time).
 */
function isoTime(time: number): string {
  if (!(time >= 0 && time < YEAR_10000)) return new Date(time).toISOString();
  const second = Math.floor(time / 1000);
  if (second !== lastSecond) {
    lastSecond = second;
    secondPrefix = new Date(second * 1000).toISOString().slice(0, 19);
  }
  const ms = Math.floor(time - second * 1000);
  return `${secondPrefix}.${ms < 10 ? "00" : ms < 100 ? "0" : ""}${ms}Z`;
}

/**
 * `num(tenths(ms))` written from integers: V8 prints a fraction (`1.5`) several times slower than
 * the whole numbers it is made of. Past 10^15 tenths, or below zero, the number is printed as it
 * is; a property test compares the two.
 */
function inTenths(ms: number): string {
  const t = Math.round(ms * 10);
  if (!(t >= 0 && t < 1e15)) return num(tenths(ms));
  const tenth = t % 10;
  const whole = (t - tenth) / 10;
  return tenth === 0 ? `${whole}` : `${whole}.${tenth}`;
}

/** Milliseconds to a tenth: finer is noise, coarser hides loopback-fast upstreams. */
function tenths(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/**
 * The most bytes a field the client chose (method, host, path) takes in a line once quoted: three
 * of them and the rest of a line stay within `PIPE_BUF`, so no line ever needs a write of its own
 * (which under `deno serve --parallel` could mix with another worker's lines).
 */
const MAX_FIELD_BYTES = 1024;
const utf8 = new TextEncoder();

/** The value clipped and quoted, then halved until its bytes fit {@linkcode MAX_FIELD_BYTES}. */
function field(value: string): string {
  let cut = clip(value);
  let quoted = quote(cut);
  // An escape (\u0001) is six bytes and a character up to three in UTF-8, so 512 clipped
  // characters can take 3 KB. Checked in bytes only when the length allows that at all.
  while (quoted.length * 3 > MAX_FIELD_BYTES && utf8.encode(quoted).length > MAX_FIELD_BYTES) {
    cut = `${cut.slice(0, Math.floor((cut.length - 1) / 2))}…`;
    quoted = quote(cut);
  }
  return quoted;
}

/**
 * Characters `JSON.stringify` leaves raw that line readers split on (NEL, U+2028, U+2029:
 * Python's `splitlines`, many viewers) or that terminals act on (DEL and the C1 controls).
 */
const LINE_BREAKING = /[\u007f-\u009f\u2028\u2029]/;

/**
 * JSON text with {@linkcode LINE_BREAKING} characters escaped as `\uXXXX`, so a line stays one
 * line in every reader; still the same JSON value.
 */
export function oneLine(json: string): string {
  return LINE_BREAKING.test(json)
    ? json.replace(
      new RegExp(LINE_BREAKING, "g"),
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    )
    : json;
}

/** `q()` for a value a client chose, escaped as the line will be, so its size is what counts. */
function quote(value: string): string {
  return oneLine(q(value));
}

function clip(value: string): string {
  return value.length > MAX_FIELD_LENGTH ? `${value.slice(0, MAX_FIELD_LENGTH)}…` : value;
}
