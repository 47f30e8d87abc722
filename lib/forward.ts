/** @module Sends a request to an upstream origin and turns its answer into the client's answer. */
import type { Upstream } from "./compile_rules.ts";
import { cookieName, filterCookieHeader } from "./cookies.ts";
import { isPinCookieName } from "./app_names.ts";
import { cgiName, hasCgiSeparator } from "./cgi_name.ts";
import { DeadlineQueue } from "./deadline_queue.ts";
import type { HeaderList, HeaderPairs } from "./header_list.ts";
import { HttpError } from "./http_error.ts";
import { CLIENT_CUT_BODY, clientClosed } from "./request_body.ts";
import { runtimeTracing } from "./tracing.ts";
import { reportUpstreamFailure } from "./upstream_failure_log.ts";

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

/**
 * Headers only a proxy or CDN may write, which Rack, Symfony, Spring and others read as the
 * scheme, port, prefix or host the client used, or as the client's address (npm `request-ip`
 * reads `X-Client-IP` before `X-Forwarded-For`, Rails' RemoteIp `Client-IP`, Java snippets
 * `Proxy-Client-IP`): without trusted proxies in front, a client must not be able to claim https,
 * another port or another address through vestibule. (`X-Forwarded-For`, `-Host`, `-Proto` and
 * `X-Real-IP` are always vestibule's own.)
 */
export const PROXY_CLAIMS: ReadonlySet<string> = new Set([
  "forwarded",
  "x-forwarded-port",
  "x-forwarded-ssl",
  "x-forwarded-scheme",
  "x-forwarded-prefix",
  "x-forwarded-server",
  "front-end-https",
  "x-url-scheme",
  // Tornado (xheaders) reads X-Scheme before X-Forwarded-Proto; Jetty's
  // ForwardedRequestCustomizer X-Proxied-Https, and Proxy-Ssl-Id or Proxy-Auth-Cert as
  // "secure"; WebLogic WL-Proxy-SSL.
  "x-scheme",
  "x-proxied-https",
  "proxy-ssl-id",
  "proxy-auth-cert",
  "wl-proxy-ssl",
  "x-forwarded",
  "forwarded-for",
  "x-original-forwarded-for",
  "x-client-ip",
  "client-ip",
  "true-client-ip",
  "cf-connecting-ip",
  "fastly-client-ip",
  "x-cluster-client-ip",
  "proxy-client-ip",
  "wl-proxy-client-ip",
  "x-originating-ip",
  "x-remote-ip",
  "x-remote-addr",
  "x-envoy-external-address",
]);

/**
 * Headers some frameworks read as the request's URL in place of the request line: Symfony before
 * 3.4.14 (CVE-2018-14773) and Zend Framework 1 `X-Original-Url`, Yii 2 `X-Rewrite-Url`. IIS
 * writes them when it rewrites; no client has reason to. The rules matched the request line, so
 * they are never forwarded, from anyone, in any spelling: `GET /public` with
 * `X-Rewrite-Url: /admin` reached the region as its admin page, past an `^/admin` rule.
 */
export const URL_CLAIMS: ReadonlySet<string> = new Set(["x-original-url", "x-rewrite-url"]);

/** What forwarding needs to know about the incoming request, computed once per request. */
export interface ForwardContext {
  /** The public `Host` the client used. */
  publicHost: string;
  /** `http` or `https`, as the client sees vestibule. */
  proto: string;
  forwardedFor: string;
  /** The client's address as vestibule judged it; sent as `X-Real-IP`. */
  clientIp: string;
  /** Whether incoming `X-Forwarded-Host`/`-Proto` come from trusted proxies. */
  trustForwarded: boolean;
  /** The pin header name; it is never forwarded. */
  pinHeader: string;
  /** The pin cookie name; it is never forwarded. */
  pinCookie: string;
  /** vestibule's own `Via` entry (`1.1 vestibule`), added after the client's. */
  via: string;
  /** Sent upstream as `X-Request-Id` in place of whatever the client sent. */
  requestId?: string;
}

/** Which cookies an upstream gets: all (pinned regional requests) or a whitelist. */
export type CookiePolicy = { all: true } | { only: ReadonlySet<string> };

/** The headers for one upstream call, and what {@linkcode clientResponse} needs of them. */
export interface UpstreamHeaders {
  headers: HeaderPairs;
  /** The `Accept-Encoding` the upstream was asked for: `identity` means `fetch` decodes nothing. */
  acceptEncoding: string;
  /**
   * The client's own `Accept-Encoding` (null without one): what a body `fetch` decoded may be
   * re-compressed as. Not the header sent, which the rules file may set for the upstream.
   */
  clientAcceptEncoding: string | null;
}

/** The header OCAP's callers authenticate with; it never reaches an upstream or an origin. */
export const OCAP_KEY_HEADER = "ocap-key";

/**
 * Whether a `Via` lists an entry received by `pseudonym`, vestibule's own (`via_pseudonym`,
 * RFC 9110 §7.6.3: a gateway MUST send one, and a pseudonym lets no host name leave): an
 * upstream's origin that points back at the edge (WEBSITE_ORIGIN set to the public URL) sent each
 * request round until connections ran out. A vestibule behind another one, by design, has a name
 * of its own, as each Squid in a mesh has its `unique_hostname`.
 */
export function cameThroughVestibule(via: string | null, pseudonym: string): boolean {
  return via !== null && via.includes(pseudonym) &&
    via.split(",").some((entry) => entry.trim().split(/\s+/)[1] === pseudonym);
}

/**
 * Builds the headers sent upstream: hop-by-hop headers, the pin and `Ocap-Key` removed, cookies
 * filtered by `cookies` (the pin cookie is removed in every case), `X-Forwarded-*` set, and the
 * upstream's configured headers last, in place of any the client sent, so a client cannot
 * override them.
 */
export function upstreamHeaders(
  incoming: HeaderList,
  upstream: Upstream,
  cookies: CookiePolicy,
  ctx: ForwardContext,
): UpstreamHeaders {
  const headers: HeaderPairs = [];
  const connectionNamed = connectionTokens(incoming.get("connection"));
  // With OpenTelemetry on, Deno's fetch appends its own traceparent (already a child of the
  // client's); keeping the client's too would send two, which W3C Trace Context says to discard.
  const tracing = runtimeTracing();
  let acceptEncoding: string | null = null;
  let range = false;
  let via: string | undefined;
  for (const pair of incoming.pairs) {
    const [name, value] = pair;
    switch (name) {
      case "host":
      case "cookie": // filtered below
      case "x-forwarded-for": // always vestibule's own
        continue;
      case "x-request-id":
        if (ctx.requestId) continue;
        break;
      case "x-real-ip": // vestibule's own, below: apps read it as the client's address
        continue;
      case "x-forwarded-host": // the public host, below
      case "x-forwarded-proto":
      case "x-original-url": // URL_CLAIMS
      case "x-rewrite-url":
      // httpoxy (CVE-2016-5385): no client has reason to send `Proxy`, and CGI, FastCGI and WSGI
      // servers hand it to the app as HTTP_PROXY, through which its own outgoing calls (with
      // their tokens) then go. nginx and Apache advise proxies to drop it.
      case "proxy":
        continue;
      case "traceparent":
        if (tracing) continue;
        break;
      case "via": // extended below
        via = via === undefined ? value : `${via}, ${value}`;
        continue;
      case "accept-encoding":
        acceptEncoding = value;
        continue;
      case "range":
        range = true;
        break;
    }
    // `Ocap-Key` is OCAP's credential: a caller that missed the mount must not leak it.
    if (
      HOP_BY_HOP_HEADERS.has(name) || isPinHeader(name, ctx.pinHeader) || isOcapKeyHeader(name) ||
      connectionNamed?.has(name) || (!ctx.trustForwarded && PROXY_CLAIMS.has(name)) ||
      configures(upstream, name) || impersonates(name, upstream)
    ) continue;
    headers.push(pair); // The list is this request's own and the pair is never changed.
  }
  // Vestibule's own headers; a header the rules file sets for this upstream replaces any of them.
  const add = (name: string, value: string) => {
    if (!configures(upstream, name)) headers.push([name, value]);
  };
  // Browsers match the __Host- prefix in any case, and some frameworks look cookies up so too.
  // In any letter case and in PHP's spellings of it (isPinCookieName).
  const { pinCookie } = ctx;
  const isPin = (name: string) => isPinCookieName(name, pinCookie);
  const cookie = filterCookieHeader(
    incoming.get("cookie"),
    "all" in cookies ? (name) => !isPin(name) : (name) => cookies.only.has(name) && !isPin(name),
    isPin,
  );
  if (cookie) add("cookie", cookie);
  // One value each, the ones vestibule itself judged public (a trusted proxy's entry, not the
  // chain, whose left part the client wrote), so the app and the edge agree on the host.
  add("x-forwarded-host", ctx.publicHost);
  add("x-forwarded-proto", ctx.proto);
  add("x-forwarded-for", ctx.forwardedFor);
  add("x-real-ip", ctx.clientIp);
  add("via", via === undefined ? ctx.via : `${via}, ${ctx.via}`);
  if (ctx.requestId) add("x-request-id", ctx.requestId);
  // Deno's fetch asks for gzip/br on its own when no Accept-Encoding is set, and decodes what it
  // gets; a client that accepts no compression must get the origin's bytes untouched. So must a
  // range request: a decoded and re-compressed slice no longer matches its Content-Range.
  // That holds over an `accept-encoding` the rules file sets for the origin too: `fetch` would
  // decode a gzip slice it negotiated.
  let sentEncoding = !range && acceptEncoding !== null && decodedByFetch(acceptEncoding)
    ? acceptEncoding
    : "identity";
  if (range) headers.push(["accept-encoding", sentEncoding]);
  else add("accept-encoding", sentEncoding);
  for (const [name, value] of upstream.headers) {
    if (name === "accept-encoding") {
      if (range) continue;
      sentEncoding = value;
    }
    headers.push([name, value]);
  }
  return { headers, acceptEncoding: sentEncoding, clientAcceptEncoding: acceptEncoding };
}

/**
 * Whether header `name` is the pin header, also spelt `x_vestibule_region` or
 * `x.vestibule.region` for `x-vestibule-region` (or the other way round when the pin header is
 * configured so): an app reads them all as the pin ({@linkcode cgiName}).
 */
export function isPinHeader(name: string, pinHeader: string): boolean {
  return readsAs(name, pinHeader);
}

/** Whether header `name` is `Ocap-Key`, also spelt `ocap_key` or `ocap.key` (as the pin header). */
export function isOcapKeyHeader(name: string): boolean {
  return readsAs(name, OCAP_KEY_HEADER);
}

/** Whether an app reading headers by CGI name ({@linkcode cgiName}) reads `name` as `header`. */
function readsAs(name: string, header: string): boolean {
  return name === header || (name.length === header.length && cgiName(name) === cgiName(header));
}

/**
 * Headers vestibule writes itself. CGI, WSGI and Rack servers read `x_forwarded_for` as
 * `HTTP_X_FORWARDED_FOR` too, so a client's underscore spelling could stand in for (or next to)
 * vestibule's value: Puma's CVE-2024-45614. See {@linkcode impersonates}.
 */
const SET_HERE: ReadonlySet<string> = new Set([
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
  "x-request-id",
]);

/**
 * Whether `name`, read as {@linkcode cgiName} reads it, is one of the headers only vestibule, a
 * trusted proxy or the rules file may send (or a hop-by-hop one): then it is not forwarded, as
 * the pin header's other spellings are not ({@linkcode isPinHeader}). Either side may hold the
 * `_` or `.`: a configured `x_origin_secret` makes a client's `x-origin-secret` its stand-in.
 */
export function impersonates(name: string, upstream: Upstream): boolean {
  if (hasCgiSeparator(name)) {
    const dashed = cgiName(name);
    if (
      SET_HERE.has(dashed) || PROXY_CLAIMS.has(dashed) || HOP_BY_HOP_HEADERS.has(dashed) ||
      URL_CLAIMS.has(dashed)
    ) {
      return true;
    }
    for (const [configured] of upstream.headers) {
      if (cgiName(configured) === dashed) return true;
    }
    return false;
  }
  if (!upstream.cgiSpelledHeaders) return false; // the usual case: nothing to compare
  for (const [configured] of upstream.headers) {
    if (hasCgiSeparator(configured) && cgiName(configured) === name) return true;
  }
  return false;
}

/** Whether the rules file sets header `name` for this upstream (the list is short). */
function configures(upstream: Upstream, name: string): boolean {
  for (const [configured] of upstream.headers) if (configured === name) return true;
  return false;
}

/** Whether an `Accept-Encoding` value accepts a coding that Deno's `fetch` would decode. */
function decodedByFetch(acceptEncoding: string): boolean {
  for (const coding of DECODED_BY_FETCH) if (acceptsEncoding(acceptEncoding, coding)) return true;
  return false;
}

/** Encodings Deno's `fetch` decodes by itself unless the request asked for `identity` only. */
const DECODED_BY_FETCH = new Set(["gzip", "br"]);

/**
 * How long an upstream call runs before vestibule watches for its client leaving. Reading a
 * `Deno.serve` request's `signal` cost 3–8 % of regional requests/s in paired load runs, and
 * almost every call is over sooner; a signal read late still reports a client already gone.
 */
export const CLIENT_WATCH_AFTER_MS = 1_000;

/**
 * How slow an answer must be for vestibule to ask, before handing it on, whether its client
 * left while it came (before {@linkcode CLIENT_WATCH_AFTER_MS}, nothing watched): the signal's
 * cost then counts for little, and a page abandoned after half a second is the client's 499, as
 * nginx logs it, not a 200 nobody got.
 */
export const CLIENT_CHECK_AFTER_MS = 50;

/** Throws 499 `client_closed`, dropping `answer`, if the client of `request` has gone. */
export async function unlessClientLeft(request: Request, answer: Response): Promise<void> {
  const { signal } = request;
  // Deno.serve makes the signal on its first read, and aborts it for a client already gone a
  // microtask later.
  await Promise.resolve();
  if (!signal.aborted) return;
  answer.body?.cancel().catch(() => {});
  throw clientClosed(signal.reason);
}

/** The timeouts of all upstream calls in this isolate, on one timer. */
const upstreamDeadlines = new DeadlineQueue();

/** Options for {@linkcode sendUpstream}. */
export interface SendOptions {
  method: string;
  headers: HeaderPairs;
  body: BodyInit | null;
  /**
   * Aborts the upstream call and its body stream whenever it fires (broadcast, when a region's
   * answer is no longer needed).
   */
  signal?: AbortSignal;
  /**
   * The client's request: a client that hangs up before the response headers cancels the
   * upstream call (nginx's `proxy_ignore_client_abort off`), with 499 `client_closed`; see
   * {@linkcode CLIENT_WATCH_AFTER_MS}. After the headers, `Deno.serve` cancels the body stream
   * itself.
   */
  client?: { readonly signal: AbortSignal };
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
  const deadline = upstreamDeadlines.add(
    timeoutMs,
    () => timeout.abort(new DOMException("Upstream timed out", "TimeoutError")),
  );
  // The client's signal aborts the timeout's own controller: no dependent signal per request.
  let client: AbortSignal | undefined;
  const onClientGone = () => timeout.abort(client!.reason);
  const watch = options.client &&
    upstreamDeadlines.add(CLIENT_WATCH_AFTER_MS, () => {
      client = options.client!.signal;
      if (client.aborted) onClientGone();
      else client.addEventListener("abort", onClientGone);
    });
  const signal = options.signal
    ? AbortSignal.any([options.signal, timeout.signal])
    : timeout.signal;
  const fresh = onFreshConnection(options.method);
  try {
    return await fetch(upstream.origin + pathAndQuery, {
      client: fresh ? FRESH_CONNECTIONS : undefined,
      method: options.method,
      // Asked to, the origin mostly closes first (30 of 40 sequential POSTs on loopback), so the
      // TIME_WAIT is on its port: closed by vestibule, each such request holds one of its
      // ephemeral ports for a minute (Linux), and a few hundred a second would run out of them.
      headers: fresh ? [...options.headers, ["connection", "close"]] : options.headers,
      body: options.body,
      redirect: "manual",
      signal,
      // Lets a request body stream through instead of being buffered first.
      ...(options.body instanceof ReadableStream ? { duplex: "half" } : {}),
    } as RequestInit);
  } catch (error) {
    if (client?.aborted) throw clientClosed(error);
    if (timeout.signal.aborted) {
      throw new HttpError(
        504,
        "upstream_timeout",
        `Upstream "${upstream.id}" did not answer within ${timeoutMs} ms`,
        { cause: error },
      );
    }
    if (options.signal?.aborted) throw options.signal.reason ?? error;
    if (requestBodyBroke(error)) throw clientClosed(error);
    if (answerUnreadable(error)) {
      reportUpstreamFailure(upstream.id, "upstream_invalid", error);
      throw new HttpError(
        502,
        "upstream_invalid",
        `Upstream "${upstream.id}" answered with what is not HTTP a client could be handed`,
        { cause: error },
      );
    }
    reportUpstreamFailure(upstream.id, "upstream_unavailable", error);
    throw new HttpError(
      502,
      "upstream_unavailable",
      `Upstream "${upstream.id}" is unavailable`,
      { cause: error },
    );
  } finally {
    deadline.cancel();
    watch?.cancel();
    client?.removeEventListener("abort", onClientGone);
  }
}

/**
 * The methods sent on kept-alive connections: safe ones (RFC 9110 §9.2.1), which carry no body in
 * practice. When a kept-alive connection breaks before the answer, Deno's `fetch` sends the request
 * again on a new one, even after the origin read it (a worker killed mid-request, a deploy), a
 * body `Deno.serve` streams included once it has arrived whole: the app ran one POST twice, where
 * nginx never resends a POST. A body still arriving cannot be sent again, and failed 502 when the
 * origin closed the connection as idle just as the request went out (gunicorn does after 2 s).
 */
const KEPT_ALIVE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Every other request goes on a connection of its own: `fetch` resends only on a connection that
 * served a request before, and this client keeps none idle. (A runtime without `createHttpClient`
 * keeps the shared pool.)
 */
export const FRESH_CONNECTIONS: Deno.HttpClient | undefined =
  typeof Deno.createHttpClient === "function"
    ? Deno.createHttpClient({ poolMaxIdlePerHost: 0 })
    : undefined;

/** Whether a request of this method goes on a connection of its own, with `Connection: close`. */
export function onFreshConnection(method: string): boolean {
  return FRESH_CONNECTIONS !== undefined && !KEPT_ALIVE_METHODS.has(method);
}

/**
 * Whether `fetch` failed because the streamed request body could not be read: the client hung
 * up mid-upload. Deno gives no error class for it, only a message on the cause: `Cannot read
 * request body` (HTTP/1.1), `early end, expected N more bytes` (an HTTP/2 body that `Deno.serve`
 * ended short of its `Content-Length`, hyperium/hyper#3681), or vestibule's own
 * {@linkcode CLIENT_CUT_BODY} (`unlessEmpty`). Should they change, such a failure is counted as
 * the upstream's (502) again, which is where it was.
 */
function requestBodyBroke(error: unknown): boolean {
  const message = fetchCause(error);
  return message !== undefined && (message.includes("Cannot read request body") ||
    message.startsWith("early end, expected ") || message.startsWith(CLIENT_CUT_BODY));
}

/**
 * Whether `fetch` failed because the origin's answer did not parse (hyper's "invalid HTTP version
 * parsed", "invalid content-length parsed", "message head is too large" for 100 header lines or
 * more, …): the origin is up, so it is `upstream_invalid`, not a region that looks down.
 */
function answerUnreadable(error: unknown): boolean {
  return /: (?:invalid [\w -]+ parsed|message head is too large)$/.test(fetchCause(error) ?? "");
}

/** The message of the cause `fetch` gives its `TypeError`: Deno's only word on what failed. */
function fetchCause(error: unknown): string | undefined {
  const cause = error instanceof TypeError ? error.cause : undefined;
  return cause instanceof Error ? cause.message : undefined;
}

/**
 * The one value of a repeated `Content-Length` ("12, 12", "05, 5" as fetch reads it), or
 * `undefined` when they differ.
 */
function sameLength(joined: string): string | undefined {
  const values = joined.split(",").map((v) => v.trim());
  if (!values.every((v) => /^\d+$/.test(v))) return undefined;
  const lengths = new Set(values.map(BigInt));
  return lengths.size === 1 ? String([...lengths][0]) : undefined;
}

/**
 * Turns an upstream answer into the client's: hop-by-hop headers dropped, `Location` and
 * `Set-Cookie; Domain` that point at the origin pointed back at the public host, every
 * `Set-Cookie` kept separate, and the body streamed through untouched.
 *
 * Deno's `fetch` decodes gzip and br (unless asked for `identity` only) but leaves
 * `Content-Encoding` and `Content-Length` in place, which would make the headers lie about the
 * bytes. Such a body is
 * re-compressed as gzip for clients that accept it (nginx-style weak ETag, since the bytes
 * changed), and sent plain otherwise.
 *
 * An answer no client could be handed as it is, a status outside 200–599 or a transfer coding other
 * than `chunked` (which Deno's `fetch` leaves on the bytes, and which is hop-by-hop, so the label
 * would be dropped), is 502 `upstream_invalid`, as nginx refuses them.
 */
export function clientResponse(
  res: Response,
  upstream: Upstream,
  ctx: ForwardContext,
  asked: Omit<UpstreamHeaders, "headers">,
): Response {
  const sentAcceptEncoding = asked.acceptEncoding;
  const h = res.headers;
  // `new Response()` throws on a status above 599 (a 500 of vestibule's own on the copy path);
  // `fetch` hands over a 101 to a request that asked for no upgrade (RFC 9110 §15.2.2 forbids
  // it, and Upgrade, hop-by-hop, would be gone). A WebSocket upgrade does not come this way.
  if (res.status < 200 || res.status > 599) {
    throw invalidAnswer(res, upstream, `status ${res.status}`);
  }
  const transfer = h.get("transfer-encoding");
  if (transfer !== null && !onlyChunked(transfer)) {
    throw invalidAnswer(res, upstream, `Transfer-Encoding "${transfer}"`);
  }
  // `fetch` joins a repeated Content-Length ("2, 2"), which Deno.serve cannot read: a HEAD's
  // answer went out as `Content-Length: 0`, a GET's chunked. One value repeated is that value
  // (RFC 9110 §8.6). Values that differ, or one that is no length, make a GET fail in fetch; hyper
  // frames a HEAD's answer without reading its length, so they are refused here.
  const sentLength = h.get("content-length");
  const length = sentLength !== null && !/^\d+$/.test(sentLength)
    ? sameLength(sentLength)
    : sentLength;
  // A 204, 205 or 304 has no body whatever its length says: fetch ignores it, and so may we.
  if (length === undefined && transfer === null && !NULL_BODY_STATUSES.has(res.status)) {
    throw invalidAnswer(res, upstream, `Content-Length "${sentLength}"`);
  }
  const encoding = h.get("content-encoding")?.trim().toLowerCase();
  // A bodiless answer (HEAD, 304) gets the headers its GET would get.
  const decoded = encoding !== undefined && DECODED_BY_FETCH.has(encoding) &&
    // Deno's fetch leaves the body alone only for `identity`, in any letter case (a rules file may
    // set `Identity`); for anything else it decodes gzip and br.
    sentAcceptEncoding.trim().toLowerCase() !== "identity";
  const sentLocation = h.get("location");
  const location = sentLocation === null ? undefined : firstLine(sentLocation, NEXT_LOCATION);
  const toOrigin = location === undefined ? undefined : originLocation(location, upstream, ctx);
  const repeated = location !== undefined && location !== sentLocation;
  const sentRefresh = h.get("refresh");
  const refresh = sentRefresh === null ? undefined : firstLine(sentRefresh, NEXT_REFRESH);
  // Rewritten, or its first line alone when the origin wrote it twice (even an empty one).
  const refreshed = refresh === undefined
    ? undefined
    : publicRefresh(refresh, upstream, ctx) ?? (refresh === sentRefresh ? undefined : refresh);
  const cookies = h.getSetCookie();
  if (
    !decoded && !toOrigin && !repeated && refreshed === undefined && cookies.length === 0 &&
    length === sentLength && !hasHopByHop(h) &&
    // Chunks and a Content-Length both: the copy drops the length, which the log would report.
    !(transfer !== null && sentLength !== null) &&
    // A HEAD whose GET has no length: Deno.serve writes Content-Length: 0 for a null body.
    !(res.body === null && sentLength === null && !NULL_BODY_STATUSES.has(res.status))
  ) {
    return res; // Nothing to change: hand the upstream response over as it is, without copies.
  }

  const headers = new Headers();
  const connectionNamed = connectionTokens(h.get("connection"));
  for (const [name, value] of h) {
    if (
      HOP_BY_HOP_HEADERS.has(name) || name === "set-cookie" || connectionNamed?.has(name) ||
      // Framed by chunks, whatever a Content-Length beside them says (RFC 9112 §6.3: a proxy
      // MUST drop it). Kept, Deno.serve announced the stale length and cut the connection.
      (name === "content-length" && (transfer !== null || length === undefined))
    ) {
      continue;
    }
    headers.append(name, name === "content-length" ? length! : value);
  }
  const pinCookie = ctx.pinCookie.toLowerCase();
  for (const cookie of cookies) {
    // The pin is the edge's own: an upstream (buggy, or compromised) must not pin browsers to a
    // region, which broadcast and pin_on decide. Names compared in any case, as the pin is read.
    if (setCookieName(cookie) === pinCookie) continue;
    headers.append("set-cookie", rewriteCookieDomain(cookie, upstream, ctx));
  }
  if (toOrigin) headers.set("location", publicUrl(toOrigin, ctx));
  else if (repeated) headers.set("location", location);
  if (refreshed !== undefined) headers.set("refresh", refreshed);
  let body = res.body;
  // A null body (a HEAD's) without a length leaves it open, as its GET's is: no Content-Length: 0.
  if (!body && !headers.has("content-length") && !NULL_BODY_STATUSES.has(res.status)) {
    body = emptyStream();
  }
  if (decoded) {
    headers.delete("content-encoding");
    headers.delete("content-length");
    const etag = headers.get("etag");
    if (etag && !etag.startsWith("W/")) headers.set("etag", `W/${etag}`);
    // Deno.serve writes Content-Length: 0 for a null body (a HEAD's, of any status that may have
    // one); an empty stream leaves the length open, as its GET's is.
    if (!body && !NULL_BODY_STATUSES.has(res.status)) {
      body = emptyStream();
    }
    if (acceptsEncoding(asked.clientAcceptEncoding, "gzip")) {
      // Only a real body: the empty stream of a HEAD compressed to 20 bytes of gzip, which
      // Deno.serve sent as DATA over HTTP/2 (the client reset the stream).
      if (res.body) body = body!.pipeThrough(new CompressionStream("gzip"));
      headers.set("content-encoding", "gzip");
      // Offsets into vestibule's own gzip, which nobody can serve (a range request goes
      // upstream as identity): nginx's gzip filter clears it too.
      headers.delete("accept-ranges");
    }
    headers.append("vary", "accept-encoding");
  }
  return new Response(body, { status: res.status, statusText: res.statusText, headers });
}

/**
 * The cookie name a `Set-Cookie` line makes the browser send back, as the edge reads request
 * cookies ({@linkcode cookieName}: NEL and the like trimmed, where browsers keep them as part of
 * the name), lower-cased. A nameless line (`=vestibule_region=au`) is sent back as its value
 * alone (RFC 6265bis §5.8.3), so its value's own name is the one that counts.
 */
function setCookieName(line: string): string {
  const pair = line.slice(0, (line.indexOf(";") + 1 || line.length + 1) - 1);
  const eq = pair.indexOf("=");
  if (eq === -1) return "";
  const name = cookieName(pair.slice(0, eq));
  if (name) return name.toLowerCase();
  const value = pair.slice(eq + 1);
  const inner = value.indexOf("=");
  return inner === -1 ? "" : cookieName(value.slice(0, inner)).toLowerCase();
}

/**
 * Whether a `Transfer-Encoding` value is `chunked` alone, the one coding Deno's `fetch` takes off
 * (empty list items, as in `, chunked`, are allowed: RFC 9110 §5.6.1).
 */
export function onlyChunked(value: string): boolean {
  if (value === "chunked") return true; // nearly always
  const codings = value.split(",").map((c) => c.trim().toLowerCase()).filter(Boolean);
  return codings.length === 1 && codings[0] === "chunked";
}

/** The 502 for an upstream answer vestibule cannot pass on; its body is let go. */
function invalidAnswer(res: Response, upstream: Upstream, what: string): HttpError {
  res.body?.cancel().catch(() => {});
  return new HttpError(502, "upstream_invalid", `Upstream "${upstream.id}" sent ${what}`);
}

/**
 * Whether an `Accept-Encoding` value accepts `coding` with a non-zero weight: its own entry
 * decides, and `*` only when it has none (RFC 9110 §12.5.3: `*, gzip;q=0` refuses gzip).
 */
export function acceptsEncoding(header: string | null, coding: string): boolean {
  if (!header) return false;
  let any: boolean | undefined;
  for (const part of header.toLowerCase().split(",")) {
    const [name, ...params] = part.trim().split(";");
    const listed = name.trim();
    if (listed !== coding && listed !== "*") continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    const accepted = q === undefined || Number(q.slice(2)) > 0;
    if (listed === coding) return accepted;
    any ??= accepted;
  }
  return any ?? false;
}

/** Whether `h` has a hop-by-hop header; `Transfer-Encoding` is framing that `Deno.serve` redoes. */
function hasHopByHop(h: Headers): boolean {
  for (const name of HOP_BY_HOP_HEADERS) {
    if (name !== "transfer-encoding" && h.has(name)) return true;
  }
  return false;
}

/** The header names a `Connection` value lists, lower-cased. */
export function connectionTokens(value: string | null): Set<string> | undefined {
  if (!value) return undefined;
  return new Set(value.toLowerCase().split(",").map((s) => s.trim()).filter(Boolean));
}

/** Statuses whose responses never have a body (Fetch standard's null body statuses). */
export const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([101, 103, 204, 205, 304]);

/** `url` (on the origin) on the public host. */
function publicUrl(url: URL, ctx: ForwardContext): string {
  return `${ctx.proto}://${ctx.publicHost}${url.pathname}${url.search}${url.hash}`;
}

/**
 * The first line of a `Location` or `Refresh` an origin wrote more than once, as nginx keeps it
 * ("upstream sent duplicate header line … ignoring"). `fetch` joins the lines with ", ", so a
 * ", " before what starts another line (`next`) ends the first: read whole, the second line was
 * glued into the first's URL, or passed on naming the origin.
 */
function firstLine(value: string, next: RegExp): string {
  if (!value.includes(", ")) return value; // nearly always
  return value.split(next, 1)[0];
}

/** A `scheme:/`, `scheme:\\` or a path after ", ": a second `Location` line (`?q=a, b: c` is one). */
const NEXT_LOCATION = /, (?=[a-z][a-z\d+.-]*:[\/\\]|[\/\\])/i;

/**
 * A time and `;`, or a time, `,` or a space and then `url=`, a `scheme:/` or a path (HTML reads a
 * `,` after the time as a `;`, and `url=` is optional), after ", ": a second `Refresh` line
 * (`5; url=…`, `5, https://…`); `, 2026` ends no line.
 */
const NEXT_REFRESH = /, (?=\d[\d.]*\s*(?:;|[,\s]\s*(?:url\s*=|[a-z][a-z\d+.-]*:[\/\\]|[\/\\])))/i;

/**
 * A `Refresh` header (`5; url=…`), which browsers follow like a redirect, with a URL that names
 * the origin pointed back at the public host, as nginx's `proxy_redirect` does; `undefined` when
 * it names none. Read as the HTML standard's declarative refresh: a time, `;` or `,`, an optional
 * `url=`, and the URL, optionally quoted.
 */
function publicRefresh(value: string, upstream: Upstream, ctx: ForwardContext): string | undefined {
  const parts = /^(\s*[\d.]+\s*[;,]?\s*(?:url\s*=\s*)?)(["']?)(.*)$/is.exec(value);
  if (!parts) return undefined;
  const [, prefix, quote, rest] = parts;
  const end = quote ? rest.indexOf(quote) : -1;
  const url = end >= 0 ? rest.slice(0, end) : rest;
  const toOrigin = originLocation(url.trim(), upstream, ctx);
  if (!toOrigin) return undefined;
  return `${prefix}${quote}${publicUrl(toOrigin, ctx)}${end >= 0 ? rest.slice(end) : quote}`;
}

/**
 * Where a browser on the public page goes with `location`, when that is the origin's own host
 * and port (either scheme): read as the WHATWG URL parser reads it, tabs and newlines removed,
 * against the public URL, so `/\t/host`, `http:\\host` and, on an https page, `http:host` count
 * too. A Location that already is the public page's own origin is left as it is.
 */
function originLocation(
  location: string,
  upstream: Upstream,
  ctx: ForwardContext,
): URL | undefined {
  const page = URL.parse(`${ctx.proto}://${ctx.publicHost}/`);
  if (!page) return undefined; // viewRequest refuses such hosts; nothing to point back at
  const url = URL.parse(asBrowserReads(location).replace(/[\t\n\r]/g, ""), page);
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) return undefined;
  if (endpoint(url) !== endpoint(new URL(upstream.origin))) return undefined;
  return url.origin === page.origin ? undefined : url;
}

/**
 * A header value as a browser reads its bytes: each octet above 0x7F percent-encoded, as Firefox
 * does before parsing a Location, so the URL parser decodes a host as UTF-8 (Go's net/http and
 * PHP's `header()` write a non-ASCII Location so) and a path or query keeps the octets the origin
 * wrote. `fetch` hands them over one character per byte: parsed so, `/über` came back as
 * `/%C3%83%C2%BCber`; decoded whole, one Latin-1 octet in the path hid a UTF-8 host.
 */
function asBrowserReads(value: string): string {
  return value.replace(
    /[\x80-\xff]/g,
    (octet) => `%${octet.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/**
 * The host without a trailing dot, and the port when it is not the scheme's default (the parser
 * drops a default one): `https://origin/` names an `http://origin` on port 80 as the app behind
 * TLS writes it, and `http://origin.:8001/` the origin on 8001.
 */
function endpoint(url: URL): string {
  return `${url.hostname.replace(/\.$/, "")}:${url.port}`;
}

/**
 * Points a cookie's `Domain` attribute at the public host when it named the origin's host. One
 * behind octets browsers do not trim (they trim SP and HTAB only, RFC 6265 §5.2; `\s` and `trim()`
 * take an A0 for a space) keeps them: a browser ignores or refuses it, as it would from the origin.
 */
function rewriteCookieDomain(cookie: string, upstream: Upstream, ctx: ForwardContext): string {
  const originHost = upstream.host.replace(/:\d+$/, "").toLowerCase();
  const publicHost = ctx.publicHost.replace(/:\d+$/, "");
  // Every Domain attribute: a browser uses the last (RFC 6265 §5.3).
  return cookie.replace(
    /;\s*domain\s*=\s*\.?([^;]*)/gi,
    (attr, domain: string) => {
      const named = domain.trim();
      if (named.toLowerCase() !== originHost) return attr;
      const value = /^;[ \t]*domain[ \t]*=([^;]*)$/i.exec(attr)?.[1].replace(
        /^[ \t]+|[ \t]+$/g,
        "",
      );
      if (value?.replace(/^\./, "").toLowerCase() === originHost) return `; Domain=${publicHost}`;
      return attr.slice(0, attr.length - domain.length) + domain.replace(named, publicHost);
    },
  );
}

/**
 * A body of no bytes whose length Deno.serve leaves open (a null body is written as
 * `Content-Length: 0`): what a HEAD answer gets when its GET's length is not known.
 */
export function emptyStream(): ReadableStream<Uint8Array<ArrayBuffer>> {
  return new ReadableStream({ start: (controller) => controller.close() });
}
