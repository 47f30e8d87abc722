/**
 * @module The observability middleware: request id, one access-log line, metrics, span
 * attributes and `Server-Timing`, around the router's catch-all handler.
 */
import type { MiddlewareHandler } from "hono";
import { type AccessLogEntry, accessLogLine } from "./access_log.ts";
import type { VestibuleMetrics } from "./metrics.ts";
import { requestId } from "./request_id.ts";
import type { RouteLog } from "./route_context.ts";
import { annotateSpan } from "./tracing.ts";

/** What the middleware hands the router for one request. */
export interface Observed {
  /** Sent upstream and returned to the client as `X-Request-Id`. */
  requestId: string;
  /** Filled by the route processors, read back for the log line. */
  log: RouteLog;
}

/** The Hono context variables the middleware sets. */
export type ObserveEnv = { Variables: { observed?: Observed } };

/** Options for {@linkcode observe}. */
export interface ObserveOptions {
  /** Writes one access-log line. */
  log: (line: string) => void;
  metrics: VestibuleMetrics;
  /** Milliseconds since the epoch, for the line's `time`. */
  now: () => number;
  /** Add `Server-Timing: edge;dur=…, upstream;dur=…` to responses. */
  serverTiming: boolean;
}

/**
 * Wraps the router: gives the request an id before it is routed, and once the response headers
 * are ready, returns the id, writes the log line, counts the metrics and annotates the span.
 * Durations run to the response headers; a body still streaming is not waited for.
 */
export function observe(options: ObserveOptions): MiddlewareHandler<ObserveEnv> {
  return async (c, next) => {
    const started = performance.now();
    const time = options.now();
    const request = c.req.raw;
    const observed: Observed = {
      requestId: requestId(request.headers.get("x-request-id")),
      log: {},
    };
    c.set("observed", observed);
    await next();

    const totalMs = performance.now() - started;
    const { log } = observed;
    // An upstream response is handed over as it is, and a fetch response's headers are immutable.
    const response = new Response(c.res.body, c.res);
    response.headers.set("x-request-id", observed.requestId);
    if (options.serverTiming) {
      response.headers.append("server-timing", serverTiming(totalMs, log.upstreamMs));
    }
    const length = response.headers.get("content-length");
    const entry: AccessLogEntry = {
      time,
      requestId: observed.requestId,
      method: request.method,
      host: request.headers.get("host") ?? "",
      path: c.req.path,
      status: response.status,
      totalMs,
      bytes: length !== null && /^\d+$/.test(length) ? Number(length) : undefined,
      route: log,
    };
    try {
      options.metrics.record(entry);
      annotateSpan(observed.requestId, log);
      options.log(accessLogLine(entry));
    } catch (error) {
      // Observability must never fail a request that was answered.
      console.error(JSON.stringify({ msg: "observe failed", error: String(error) }));
    }
    // Assigning over c.res would make Hono copy the response and merge the old headers again.
    c.res = undefined;
    c.res = response;
  };
}

/** `edge` is the whole time at the edge until the response headers, the upstream's included. */
function serverTiming(totalMs: number, upstreamMs: number | undefined): string {
  const edge = `edge;dur=${totalMs.toFixed(1)}`;
  return upstreamMs === undefined ? edge : `${edge}, upstream;dur=${upstreamMs.toFixed(1)}`;
}
