/** @module Errors vestibule answers itself, and how they are rendered for the client. */

/** An answer vestibule gives on its own behalf, with a stable machine-readable code. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "HttpError";
  }
}

/**
 * Renders an error as `{ "error": code, "message": … }` for clients that accept JSON, else as a
 * short plain-text page, so both API clients and people in a browser get something readable.
 */
export function errorResponse(
  error: HttpError,
  accept: string | null,
  /** A HEAD gets the GET's headers and no body: over HTTP/2 Deno.serve sent it as DATA. */
  method?: string,
): Response {
  const headers = new Headers({ "cache-control": "no-store" });
  let body: string;
  if (accept && prefersJson(accept)) {
    headers.set("content-type", "application/json; charset=utf-8");
    body = JSON.stringify({ error: error.code, message: error.message });
  } else {
    headers.set("content-type", "text/plain; charset=utf-8");
    body = `${error.status} ${error.code}: ${error.message}\n`;
  }
  // Stated, not left to Deno.serve: a HEAD's length must be its GET's (RFC 9110 §8.6), and Hono
  // answers a HEAD from the GET's headers with a null body, for which Deno.serve writes 0.
  headers.set("content-length", String(new TextEncoder().encode(body).length));
  if (method !== "HEAD") return new Response(body, { status: error.status, headers });
  // Over HTTP/2 Deno.serve sent a HEAD's body as DATA: the client reset the stream.
  return new Response(null, { status: error.status, headers });
}

/**
 * Whether JSON is the better of the two answers for this `Accept` (RFC 9110 §12.5.1): its quality
 * is above 0 and not below plain text's. A client that lists `text/html` is a person in a browser
 * (browsers also send a wildcard) and gets the page.
 */
export function prefersJson(accept: string): boolean {
  const ranges = mediaRanges(accept);
  if (ranges.some((range) => range.type === "text/html" && range.q > 0)) return false;
  const json = quality(ranges, "application", "json");
  return json > 0 && json >= quality(ranges, "text", "plain");
}

interface MediaRange {
  /** `type/subtype` in lower case; `*` for either part. */
  type: string;
  q: number;
}

function mediaRanges(accept: string): MediaRange[] {
  return accept.split(",").map((part) => {
    const [type, ...parameters] = part.split(";");
    let q = 1;
    for (const parameter of parameters) {
      const [name, value] = parameter.split("=", 2).map((s) => s.trim());
      // A weight that is not 0–1 is read as the default, as browsers and nginx read it.
      if (name.toLowerCase() === "q" && /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(value ?? "")) {
        q = Number(value);
      }
    }
    return { type: type.trim().toLowerCase(), q };
  });
}

/** The weight of the most specific range that covers `type/subtype`; 0 when none does. */
function quality(ranges: MediaRange[], type: string, subtype: string): number {
  for (const candidate of [`${type}/${subtype}`, `${type}/*`, "*/*"]) {
    let best = -1;
    for (const range of ranges) if (range.type === candidate && range.q > best) best = range.q;
    if (best >= 0) return best;
  }
  return 0;
}
