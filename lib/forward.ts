/** @module Sends a request to an upstream origin and turns its answer into the client's answer. */
import type { Upstream } from "./compile_rules.ts";
import { filterCookieHeader } from "./cookies.ts";
import { HttpError } from "./http_error.ts";
import { runtimeTracing } from "./tracing.ts";

/**
 * Hop-by-hop headers, which describe one connection and must not be forwarded: RFC 9110 §7.6.1
 * (Connection, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade) plus the ones RFC
 * 2616 §13.5.1 also listed (Trailer, Proxy-Authenticate, Proxy-Authorization), as Hono's proxy
 * helper does.
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
]);

/** What forwarding needs to know about the incoming request, computed once per request. */
export interface ForwardContext {
  /** The public `Host` the client used. */
  publicHost: string;
  /** `http` or `https`, as the client sees vestibule. */
  proto: string;
  forwardedFor: string;
  /** Whether incoming `X-Forwarded-Host`/`-Proto` come from trusted proxies. */
  trustForwarded: boolean;
  /** The pin header name; it is never forwarded. */
  pinHeader: string;
  /** The pin cookie name; it is never forwarded. */
  pinCookie: string;
  /** Sent upstream as `X-Request-Id` in place of whatever the client sent. */
  requestId?: string;
}

/** Which cookies an upstream gets: all (pinned regional requests) or a whitelist. */
export type CookiePolicy = { all: true } | { only: ReadonlySet<string> };

/**
 * Builds the headers sent upstream: hop-by-hop headers and the pin removed, cookies filtered by
 * `cookies` (the pin cookie is removed in every case), `X-Forwarded-*` set, and the upstream's
 * configured headers added last so a client cannot override them.
 */
export function upstreamHeaders(
  incoming: Headers,
  upstream: Upstream,
  cookies: CookiePolicy,
  ctx: ForwardContext,
): Headers {
  const headers = new Headers();
  const connectionNamed = connectionTokens(incoming.get("connection"));
  for (const [name, value] of incoming) {
    if (
      HOP_BY_HOP_HEADERS.has(name) || name === "host" || name === "cookie" ||
      name === ctx.pinHeader || connectionNamed?.has(name)
    ) continue;
    headers.append(name, value);
  }
  const pinCookie = ctx.pinCookie;
  const cookie = filterCookieHeader(
    incoming.get("cookie"),
    "all" in cookies
      ? (name) => name !== pinCookie
      : (name) => name !== pinCookie && cookies.only.has(name),
  );
  if (cookie) headers.set("cookie", cookie);
  if (!ctx.trustForwarded) {
    headers.delete("forwarded");
    headers.set("x-forwarded-host", ctx.publicHost);
    headers.set("x-forwarded-proto", ctx.proto);
  } else {
    if (!headers.has("x-forwarded-host")) headers.set("x-forwarded-host", ctx.publicHost);
    if (!headers.has("x-forwarded-proto")) headers.set("x-forwarded-proto", ctx.proto);
  }
  headers.set("x-forwarded-for", ctx.forwardedFor);
  if (ctx.requestId) headers.set("x-request-id", ctx.requestId);
  // With OpenTelemetry on, Deno's fetch appends its own traceparent (already a child of the
  // client's); keeping the client's too would send two, which W3C Trace Context says to discard.
  if (runtimeTracing()) headers.delete("traceparent");
  // Deno's fetch asks for gzip/br on its own when no Accept-Encoding is set, and decodes what it
  // gets; a client that accepts no compression must get the origin's bytes untouched.
  const acceptEncoding = incoming.get("accept-encoding");
  if (![...DECODED_BY_FETCH].some((coding) => acceptsEncoding(acceptEncoding, coding))) {
    headers.set("accept-encoding", "identity");
  }
  for (const [name, value] of upstream.headers) headers.set(name, value);
  return headers;
}

/** Encodings Deno's `fetch` decodes by itself unless the request asked for `identity` only. */
const DECODED_BY_FETCH = new Set(["gzip", "br", "deflate"]);

/** Options for {@linkcode sendUpstream}. */
export interface SendOptions {
  method: string;
  headers: Headers;
  body: BodyInit | null;
  /** Aborts the upstream call when the client goes away (or broadcast no longer needs it). */
  signal?: AbortSignal;
  /** Overrides the upstream's own `timeout_ms` (broadcast rules have their own). */
  timeoutMs?: number;
}

/**
 * Calls the upstream without following redirects (the client must see them) and with a timeout
 * on the response headers only: a long download that has started is not cut off.
 * Failures become {@linkcode HttpError}s that keep their cause: 502 `upstream_unavailable`,
 * 504 `upstream_timeout`.
 */
export async function sendUpstream(
  upstream: Upstream,
  pathAndQuery: string,
  options: SendOptions,
): Promise<Response> {
  const timeoutMs = options.timeoutMs ?? upstream.timeoutMs;
  const timeout = new AbortController();
  const timer = setTimeout(
    () => timeout.abort(new DOMException("Upstream timed out", "TimeoutError")),
    timeoutMs,
  );
  const signal = options.signal
    ? AbortSignal.any([options.signal, timeout.signal])
    : timeout.signal;
  try {
    return await fetch(upstream.origin + pathAndQuery, {
      method: options.method,
      headers: options.headers,
      body: options.body,
      redirect: "manual",
      signal,
      // Lets a request body stream through instead of being buffered first.
      ...(options.body instanceof ReadableStream ? { duplex: "half" } : {}),
    } as RequestInit);
  } catch (error) {
    if (timeout.signal.aborted) {
      throw new HttpError(
        504,
        "upstream_timeout",
        `Upstream "${upstream.id}" did not answer within ${timeoutMs} ms`,
        { cause: error },
      );
    }
    if (options.signal?.aborted) throw options.signal.reason ?? error;
    throw new HttpError(
      502,
      "upstream_unavailable",
      `Upstream "${upstream.id}" is unavailable`,
      { cause: error },
    );
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Turns an upstream answer into the client's: hop-by-hop headers dropped, `Location` and
 * `Set-Cookie; Domain` that point at the origin pointed back at the public host, every
 * `Set-Cookie` kept separate, and the body streamed through untouched.
 *
 * Deno's `fetch` decodes gzip/br/deflate (unless asked for `identity` only) but leaves
 * `Content-Encoding` and `Content-Length` in place, which would make the headers lie about the
 * bytes. Such a body is
 * re-compressed as gzip for clients that accept it (nginx-style weak ETag, since the bytes
 * changed), and sent plain otherwise.
 */
export function clientResponse(
  res: Response,
  upstream: Upstream,
  ctx: ForwardContext,
  sentAcceptEncoding: string | null,
): Response {
  const h = res.headers;
  const encoding = h.get("content-encoding")?.trim().toLowerCase();
  const decoded = encoding !== undefined && DECODED_BY_FETCH.has(encoding) &&
    sentAcceptEncoding !== "identity";
  const location = h.get("location");
  const rewriteLocation = location !== null && pointsAtOrigin(location, upstream);
  const cookies = h.getSetCookie();
  if (
    !decoded && !rewriteLocation && cookies.length === 0 && !h.has("connection") &&
    !h.has("keep-alive") && !h.has("proxy-authenticate") && !h.has("trailer") && !h.has("upgrade")
  ) {
    return res; // Nothing to change: hand the upstream response over as it is, without copies.
  }

  const headers = new Headers();
  const connectionNamed = connectionTokens(h.get("connection"));
  for (const [name, value] of h) {
    if (HOP_BY_HOP_HEADERS.has(name) || name === "set-cookie" || connectionNamed?.has(name)) {
      continue;
    }
    headers.append(name, value);
  }
  for (const cookie of cookies) {
    headers.append("set-cookie", rewriteCookieDomain(cookie, upstream, ctx));
  }
  if (rewriteLocation) {
    const url = new URL(location!, upstream.origin);
    headers.set(
      "location",
      `${ctx.proto}://${ctx.publicHost}${url.pathname}${url.search}${url.hash}`,
    );
  }
  let body = res.body;
  if (decoded) {
    headers.delete("content-encoding");
    headers.delete("content-length");
    const etag = headers.get("etag");
    if (etag && !etag.startsWith("W/")) headers.set("etag", `W/${etag}`);
    if (body && acceptsEncoding(sentAcceptEncoding, "gzip")) {
      body = body.pipeThrough(new CompressionStream("gzip"));
      headers.set("content-encoding", "gzip");
    }
    headers.append("vary", "accept-encoding");
  }
  return new Response(body, { status: res.status, statusText: res.statusText, headers });
}

/** Whether an `Accept-Encoding` value lists `coding` with a non-zero weight. */
export function acceptsEncoding(header: string | null, coding: string): boolean {
  if (!header) return false;
  for (const part of header.toLowerCase().split(",")) {
    const [name, ...params] = part.trim().split(";");
    if (name.trim() !== coding && name.trim() !== "*") continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

function connectionTokens(value: string | null): Set<string> | undefined {
  if (!value) return undefined;
  return new Set(value.toLowerCase().split(",").map((s) => s.trim()).filter(Boolean));
}

function pointsAtOrigin(location: string, upstream: Upstream): boolean {
  if (!/^https?:\/\//i.test(location)) return false;
  try {
    return new URL(location).origin === upstream.origin;
  } catch {
    return false;
  }
}

/** Points a cookie's `Domain` attribute at the public host when it named the origin's host. */
function rewriteCookieDomain(cookie: string, upstream: Upstream, ctx: ForwardContext): string {
  const originHost = upstream.host.replace(/:\d+$/, "").toLowerCase();
  const publicHost = ctx.publicHost.replace(/:\d+$/, "");
  return cookie.replace(
    /;\s*domain=\.?([^;]*)/i,
    (attr, domain: string) =>
      domain.trim().toLowerCase() === originHost ? `; Domain=${publicHost}` : attr,
  );
}
