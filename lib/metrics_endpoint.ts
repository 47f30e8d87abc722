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
 * for ever. Tokens separated by commas (`new,old`) are all accepted, so a token can be rotated
 * without a gap: with one, scrapes failed from the restart until Prometheus had the new one. (A
 * comma is no bearer token character, so the list cannot be read two ways.)
 */
export function readMetricsToken(value: string | undefined): string | undefined {
  const tokens = value?.trim();
  if (!tokens) return undefined;
  const list = tokens.split(",").map((token) => token.trim());
  if (!list.every((token) => BEARER_TOKEN.test(token))) {
    throw new TypeError(
      "VESTIBULE_METRICS_TOKEN is not a bearer token: use letters, digits and -._~+/ (then any =); " +
        "separate several with commas",
    );
  }
  return list.join(",");
}

/**
 * Answers a scrape: 404 when no token is configured (the endpoint does not exist), 401 with a
 * `WWW-Authenticate` challenge (RFC 6750 §3) when the bearer token is missing or none of the
 * configured ones (`token` may list several, comma-separated), else the metrics. Tokens are
 * hashed before they are compared, so a comparison takes the same time whatever their lengths and
 * contents.
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
  // Each token compared, the first match not ending the loop: the time says nothing of which.
  const matches = presented === undefined
    ? []
    : options.token.split(",").map((token) => sameSecret(presented, token));
  if (!matches.includes(true)) {
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
