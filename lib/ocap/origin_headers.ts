/** @module The headers an OCAP owner sends to the origin: the caller's, minus what belongs to this hop. */
import { isPinCookieName } from "../app_names.ts";
import { filterCookieHeader } from "../cookies.ts";
import { HOP_BY_HOP_HEADERS, isOcapKeyHeader, isPinHeader } from "../forward.ts";
import { runtimeTracing } from "../tracing.ts";

/**
 * Copies the caller's headers without `Ocap-Key`, hop-by-hop headers (and those `Connection`
 * names), `Host`, `Content-Length` (recomputed), `Proxy` (httpoxy), vestibule's pin header and cookie, and (when Deno
 * traces) `traceparent`, sets `X-Request-Id` to the logged one, and asks for
 * `Accept-Encoding: identity` so `fetch` never decodes a body behind its headers' back.
 */
export function originHeaders(
  incoming: Headers,
  pin: { header: string; cookie: string },
  /** The id the access line has: the provider gets it, as the router's upstreams do. */
  requestId?: string,
): Headers {
  const named = new Set(
    (incoming.get("connection") ?? "").toLowerCase().split(",").map((s) => s.trim()),
  );
  const headers = new Headers();
  // With OpenTelemetry on, Deno's fetch appends its own traceparent, in the caller's trace: two
  // values would make the provider discard both.
  const tracing = runtimeTracing();
  for (const [name, value] of incoming) {
    if (
      HOP_BY_HOP_HEADERS.has(name) || named.has(name) || isOcapKeyHeader(name) ||
      name === "host" || name === "content-length" || name === "cookie" ||
      name === "accept-encoding" || isPinHeader(name, pin.header) ||
      // httpoxy: a provider behind CGI would take it as HTTP_PROXY, as a region would.
      name === "proxy" ||
      (tracing && name === "traceparent")
    ) continue;
    headers.append(name, value);
  }
  // As the router strips it: in any case, since browsers and frameworks match it so.
  const isPin = (name: string) => isPinCookieName(name, pin.cookie);
  const cookie = filterCookieHeader(incoming.get("cookie"), (name) => !isPin(name), isPin);
  if (cookie) headers.set("cookie", cookie);
  headers.set("accept-encoding", "identity");
  if (requestId) headers.set("x-request-id", requestId);
  return headers;
}
