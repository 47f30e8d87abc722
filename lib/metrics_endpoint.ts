/** @module `GET /_vestibule/metrics`: the Prometheus scrape, behind a bearer token. */
import { createHash, timingSafeEqual } from "node:crypto";
import { errorResponse, HttpError } from "./http_error.ts";

/** What a scrape reads: one app's `VestibuleMetrics`, or all workers' through `WorkerMetrics`. */
export interface MetricsSource {
  scrape(): Promise<string>;
  contentType: string;
}

/**
 * Answers a scrape: 404 when no token is configured (the endpoint does not exist), 401 with a
 * `WWW-Authenticate` challenge (RFC 6750 §3) when the bearer token is missing or wrong, else the
 * metrics. Both tokens are hashed first so the comparison takes the same time whatever their
 * lengths and contents.
 */
export async function metricsResponse(
  request: Request,
  options: { metrics: MetricsSource; token?: string },
): Promise<Response> {
  const accept = request.headers.get("accept");
  if (!options.token) {
    return errorResponse(new HttpError(404, "not_found", "No metrics token is configured"), accept);
  }
  const presented = /^Bearer +(\S+) *$/i.exec(request.headers.get("authorization") ?? "")?.[1];
  if (presented === undefined || !sameSecret(presented, options.token)) {
    const response = errorResponse(
      new HttpError(401, "unauthorized", "A valid bearer token is required"),
      accept,
    );
    response.headers.set("www-authenticate", 'Bearer realm="vestibule metrics"');
    return response;
  }
  return new Response(await options.metrics.scrape(), {
    headers: { "content-type": options.metrics.contentType, "cache-control": "no-store" },
  });
}

function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
