/** @module `GET /_vestibule/metrics`: the Prometheus scrape, behind a bearer token. */
import { createHash, timingSafeEqual } from "node:crypto";
import { errorResponse, HttpError } from "./http_error.ts";

/** What a scrape reads: one app's `VestibuleMetrics`, or all workers' through `WorkerMetrics`. */
export interface MetricsSource {
  scrape(): Promise<string>;
  contentType: string;
}

/** RFC 6750 §2.1 `b64token`: what a bearer token in an `Authorization` header can be. */
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * The metrics token from its environment variable: unset or blank turns the endpoint off, the
 * line break a mounted secret file often ends with is dropped, and a token no `Authorization`
 * header can carry (a space inside, say) is a start-up error, not an endpoint that answers 401
 * for ever.
 */
export function readMetricsToken(value: string | undefined): string | undefined {
  const token = value?.trim();
  if (!token) return undefined;
  if (!BEARER_TOKEN.test(token)) {
    throw new TypeError(
      "VESTIBULE_METRICS_TOKEN is not a bearer token: use letters, digits and -._~+/ (then any =)",
    );
  }
  return token;
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
    return errorResponse(
      new HttpError(404, "not_found", "No metrics token is configured"),
      accept,
      request.method,
    );
  }
  const presented = /^Bearer +(\S+) *$/i.exec(request.headers.get("authorization") ?? "")?.[1];
  if (presented === undefined || !sameSecret(presented, options.token)) {
    const response = errorResponse(
      new HttpError(401, "unauthorized", "A valid bearer token is required"),
      accept,
      request.method,
    );
    response.headers.set("www-authenticate", 'Bearer realm="vestibule metrics"');
    return response;
  }
  const text = new TextEncoder().encode(await options.metrics.scrape());
  // The length stated: Hono answers a HEAD from these headers with a null body (Deno.serve: 0).
  return new Response(text, {
    headers: {
      "content-type": options.metrics.contentType,
      "cache-control": "no-store",
      "content-length": String(text.byteLength),
    },
  });
}

function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
