/**
 * @module Observes each routed request: a request id before routing, then one access-log line,
 * metrics, span attributes and (when switched on) response headers once the answer is ready.
 */
import { type AccessLogEntry, accessLogLine } from "./access_log.ts";
import { NULL_BODY_STATUSES } from "./forward.ts";
import type { VestibuleMetrics } from "./metrics.ts";
import { requestId } from "./request_id.ts";
import { forwardedHostOf } from "./request_view.ts";
import type { RouteLog } from "./route_context.ts";
import { annotateSpan } from "./tracing.ts";

/** What the observer hands the router for one request. */
export interface Observed {
  /** Sent upstream; returned to the client only with `debug_headers`. */
  requestId: string;
  /** Filled by the route processors, read back for the log line. */
  log: RouteLog;
}

/** Options for {@linkcode createObserver}. */
export interface ObserveOptions {
  /** Writes one access-log line. */
  log: (line: string) => void;
  metrics: VestibuleMetrics;
  /** Milliseconds since the epoch, for the line's `time`. */
  now: () => number;
  /** Add `Server-Timing: edge;dur=…, upstream;dur=…` to responses. */
  serverTiming: boolean;
  /** Add `X-Request-Id`, `X-Vestibule-Rule` and `X-Vestibule-Region` to responses. */
  debugHeaders: boolean;
  /** `trusted_proxy_hops`: the host logged for a request answered before routing is theirs. */
  trustedProxyHops: number;
}

/** Runs a request's handler and observes its answer. */
export type Observer = (
  request: Request,
  path: string,
  handle: (observed: Observed) => Promise<Response>,
) => Promise<Response>;

/**
 * An observer that writes no log line, counts nothing and annotates no span: for benchmarks
 * measuring what logging and metrics cost. Request ids still go upstream: they are part of what
 * forwarding sends, like `X-Forwarded-For`, whether or not vestibule logs.
 */
export const UNOBSERVED: Observer = (request, _path, handle) =>
  handle({ requestId: requestId(request.headers.get("x-request-id")), log: {} });

/**
 * Builds the observer. It is a plain wrapper around the handler, not Hono middleware, and leaves
 * the upstream's response untouched unless a header switch asks for more: copying a `fetch`
 * response to add one header cost about 10 % of regional requests/s in `bench/observability.ts`.
 * Durations run to the response headers; a body still streaming is not waited for.
 */
export function createObserver(options: ObserveOptions): Observer {
  const decorate = options.serverTiming || options.debugHeaders;
  return async (request, path, handle) => {
    const started = performance.now();
    const time = options.now();
    const observed: Observed = {
      requestId: requestId(request.headers.get("x-request-id")),
      log: {},
    };
    let response: Response;
    try {
      response = await handle(observed);
    } catch (error) {
      // The app's error handler answers 500; the line must still be written.
      observed.log.error = "internal_error";
      record(options, request, path, observed, 500, undefined, time, performance.now() - started);
      throw error;
    }
    const totalMs = performance.now() - started;
    if (decorate) response = decorated(response, observed, totalMs, options);
    record(options, request, path, observed, response.status, response.headers, time, totalMs);
    return response;
  };
}

function decorated(
  response: Response,
  observed: Observed,
  totalMs: number,
  options: ObserveOptions,
): Response {
  // A fetch response's headers are immutable: copy once, add everything.
  const copy = new Response(response.body, response);
  const { log } = observed;
  if (options.serverTiming) {
    copy.headers.append("server-timing", serverTiming(totalMs, log.upstreamMs));
  }
  if (options.debugHeaders) {
    copy.headers.set("x-request-id", observed.requestId);
    if (log.rule) copy.headers.set("x-vestibule-rule", log.rule);
    if (log.region) copy.headers.set("x-vestibule-region", log.region);
  }
  return copy;
}

function record(
  options: ObserveOptions,
  request: Request,
  path: string,
  observed: Observed,
  status: number,
  headers: Headers | undefined,
  time: number,
  totalMs: number,
): void {
  // A HEAD answer, 1xx, 204, 205 and 304 send no body whatever their Content-Length says.
  const bodyless = request.method === "HEAD" || status < 200 || NULL_BODY_STATUSES.has(status);
  const length = bodyless ? "0" : headers?.get("content-length");
  const entry: AccessLogEntry = {
    time,
    requestId: observed.requestId,
    method: request.method,
    host: publicHost(request, observed.log, options.trustedProxyHops),
    path,
    status,
    totalMs,
    bytes: length && /^\d+$/.test(length) ? Number(length) : undefined,
    route: observed.log,
  };
  try {
    options.metrics.record(entry);
    annotateSpan(entry.requestId, observed.log);
    options.log(accessLogLine(entry));
  } catch (error) {
    // Observability must never fail a request that was answered.
    console.error(JSON.stringify({ msg: "observe failed", error: String(error) }));
  }
}

/** `edge` is the whole time at the edge until the response headers, the upstream's included. */
function serverTiming(totalMs: number, upstreamMs: number | undefined): string {
  const edge = `edge;dur=${totalMs.toFixed(1)}`;
  return upstreamMs === undefined ? edge : `${edge}, upstream;dur=${upstreamMs.toFixed(1)}`;
}

/** The host the request was routed by, or would have been had it got that far. */
function publicHost(request: Request, log: RouteLog, hops: number): string {
  const host = log.host ?? forwardedHostOf(request.headers, hops);
  if (host !== undefined) return hostOf(`http://${host}/`);
  const fromUrl = hostOf(request.url);
  // A Host Deno.serve cannot put in the URL (a byte above 0x7F) becomes `localhost:<port>` there:
  // its bad_host line named a host nobody sent, one log filters often trust. (An absolute-form
  // target naming that very `localhost:<port>` beside such a Host looks the same: logged as it.)
  const sent = request.headers.get("host");
  if (sent === null || !NON_ASCII.test(sent) || !fromUrl.startsWith("localhost:")) return fromUrl;
  const authority = authorityOf(`http://${sent}/`); // as sent: no parser to rewrite it
  return authority.slice(authority.lastIndexOf("@") + 1);
}

/**
 * The host of `url`, as the router reads it: the Host an origin-form request sent (Deno.serve
 * builds the URL from it), an HTTP/2 request's `:authority`, an absolute-form target's own host,
 * never with its userinfo or query. Scanned, and parsed only when the URL parser could write it
 * otherwise (`adm%69n.example`, `0x7f.1`, upper case): a log search for the host must find it.
 */
function hostOf(url: string): string {
  const authority = authorityOf(url);
  if (PLAIN_HOST.test(authority)) return authority;
  // With userinfo, or a `\` the parser reads as `/` (`http://admin.example\@www.example/`
  // is admin.example's path `/@www.example/`): the parser decides, as it did for the router.
  const host = URL.parse(url)?.host;
  if (host !== undefined) return host;
  const at = authority.lastIndexOf("@");
  return authority.slice(at + 1);
}

/** The text between a URL's `//` and its path, query or fragment, userinfo included. */
function authorityOf(url: string): string {
  const start = url.indexOf("//") + 2;
  let end = start;
  while (end < url.length) {
    const c = url.charCodeAt(end);
    if (c === 0x2f || c === 0x3f || c === 0x23) break; // `/`, `?`, `#`
    end++;
  }
  return url.slice(start, end);
}

/** A header value is bytes, one character each (Latin-1). */
const NON_ASCII = /[\x80-\xff]/;

/** A host the URL parser leaves as it is (mostly: `0x7f.1`-style IPv4 shorthand aside). */
const PLAIN_HOST = /^[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::\d{1,5})?$/;
