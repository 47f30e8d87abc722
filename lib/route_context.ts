/** @module What every route processor receives, and the forwarding step global and regional share. */
import type { Config, Upstream } from "./compile_rules.ts";
import {
  cameThroughVestibule,
  CLIENT_CHECK_AFTER_MS,
  clientResponse,
  type CookiePolicy,
  type ForwardContext,
  sendUpstream,
  unlessClientLeft,
  upstreamHeaders,
} from "./forward.ts";
import type { HeaderList } from "./header_list.ts";
import type { RuleMatch } from "./match_rule.ts";
import type { RegionPin } from "./pin.ts";
import type { BufferedBody } from "./request_body.ts";
import { bufferedBody, declaresBody, PEEK_MS, unlessEmpty } from "./unframed_body.ts";
import type { AssumedRegion } from "./assume_region.ts";
import { isWebSocketUpgrade, proxyWebSocket, type RelayBudget } from "./websocket_proxy.ts";
import type { CookieScope } from "./success.ts";

/** Fields a route adds to the request's access-log line. */
export interface RouteLog {
  /**
   * The public host the request was routed by (a trusted proxy's `X-Forwarded-Host`, else the
   * `Host` or `:authority`); logged in place of the URL's host once the router has read it.
   */
  host?: string;
  /** The matched rule's name and type; absent when no rule matched. */
  rule?: string;
  type?: string;
  region?: string;
  /** How the region was chosen: pin header, pin cookie, geo header, geo ip, default, region_from, broadcast. */
  regionReason?: string;
  upstream?: string;
  /** Time to the upstream's response headers, from the monotonic clock (`ctx.now` is wall time). */
  upstreamMs?: number;
  outcome?: string;
  regions?: Array<{ region: string; status?: number; error?: string; ms: number }>;
  /** The `HttpError` code when vestibule answered on its own (`upstream_timeout`, `no_rule`…). */
  error?: string;
}

/** One request on its way through the router. */
export interface RouteContext {
  request: Request;
  /** `request.headers`, read once. */
  headers: HeaderList;
  config: Config;
  match: RuleMatch;
  /** `pathname + search` of the incoming URL, appended to the upstream origin as it is. */
  pathAndQuery: string;
  searchParams: URLSearchParams;
  body: BufferedBody;
  pin?: RegionPin;
  assumed: AssumedRegion;
  forward: ForwardContext;
  now: () => number;
  log: RouteLog;
  /** Told when a WebSocket relay to `upstream` gives up on a peer that does not read. */
  onWebSocketOverloaded: (upstream: string) => void;
  /** What the app's WebSocket relays may queue together for peers that do not read. */
  webSocketBudget: RelayBudget;
}

/**
 * The body to send upstream: the buffered bytes if a matcher read them, else the untouched
 * stream, or none when a request that declared no body has none ({@linkcode unlessEmpty}).
 * Only those cases wait, so a GET does not pay for an extra `await`.
 */
function upstreamBody(
  ctx: RouteContext,
): BodyInit | null | Promise<Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null> {
  const { method, body } = ctx.request;
  if (method === "GET" || method === "HEAD") return null;
  if (ctx.body.consumed) return ctx.body.bytes().then((bytes) => bufferedBody(bytes, ctx.headers));
  return body === null || declaresBody(ctx.headers)
    ? body
    : unlessEmpty(body, PEEK_MS, ctx.request);
}

/** Proxies the request to one upstream and returns the client's response; throws `HttpError`. */
export async function forwardTo(
  ctx: RouteContext,
  upstream: Upstream,
  cookies: CookiePolicy,
  /** The rule's own timeout, if it sets one; else the upstream's. */
  timeoutMs?: number,
  /** Aborts the upstream call and its body stream (see `SendOptions.signal`). */
  signal?: AbortSignal,
): Promise<Response> {
  if (isWebSocketUpgrade(ctx.request.method, ctx.headers)) {
    return proxyWebSocket(ctx, upstream, cookies, timeoutMs ?? upstream.timeoutMs);
  }
  const { headers, ...asked } = upstreamHeaders(
    ctx.headers,
    upstream,
    cookies,
    ctx.forward,
  );
  const pending = upstreamBody(ctx);
  const body = pending instanceof Promise ? await pending : pending;
  const started = performance.now();
  const response = await sendUpstream(upstream, ctx.pathAndQuery, {
    method: ctx.request.method,
    headers,
    body,
    timeoutMs,
    client: ctx.request,
    signal,
  });
  ctx.log.upstreamMs = performance.now() - started;
  // This vestibule's own refusal of the copy it sent round (its Via on the 508): the line the
  // operator reads first says what happened, as the copy's line does.
  if (
    response.status === 508 &&
    cameThroughVestibule(response.headers.get("via"), ctx.config.via.pseudonym)
  ) {
    ctx.log.error = "loop_detected";
  }
  if (ctx.log.upstreamMs >= CLIENT_CHECK_AFTER_MS) await unlessClientLeft(ctx.request, response);
  return clientResponse(response, upstream, ctx.forward, asked);
}

/** Where a `Set-Cookie` in the answer to this request applies, for success rules. */
export function cookieScope(ctx: RouteContext): CookieScope {
  return {
    host: ctx.forward.publicHost.replace(/:\d+$/, ""),
    path: ctx.pathAndQuery.split("?", 1)[0],
  };
}

/** Adds a `Set-Cookie` to a response whose headers may be immutable (a `fetch` response). */
export function withSetCookie(response: Response, cookie: string): Response {
  const headers = new Headers(response.headers);
  headers.append("set-cookie", cookie);
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}
