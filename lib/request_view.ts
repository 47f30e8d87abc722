/** @module What the router reads from an incoming request, once, for matching and forwarding. */
import { queryAsAppsRead } from "./app_names.ts";
import { clientAddress } from "./client_address.ts";
import type { Config } from "./compile_rules.ts";
import { cameThroughVestibule, type ForwardContext, onlyChunked } from "./forward.ts";
import { HeaderList } from "./header_list.ts";
import { HttpError } from "./http_error.ts";
import { declaresBody } from "./unframed_body.ts";
import { routedPath } from "./own_paths.ts";
import { refusePathOf, requestUrl } from "./request_path.ts";
import type { RequestFacts } from "./match_rule.ts";

/** The request as matchers and forwarding see it; the router and `explain` both build it here. */
export interface RequestView {
  url: URL;
  /** The request's headers, read once. */
  headers: HeaderList;
  facts: RequestFacts;
  clientIp: string;
  forward: ForwardContext;
}

/** `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in brackets. */
const VALID_HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$/;

/**
 * Whether a request's Host (none, for HTTP/2) can be the host `request.url` was built from:
 * Deno.serve builds it unchecked, so `Host: x/_vestibule` moved `GET /health` onto vestibule's
 * own path. Requests with another Host go to the router, which answers 400 `bad_host`.
 */
export function hostHeaderFits(host: string | null): boolean {
  return host === null || VALID_HOST.test(host);
}

/**
 * The authority `Deno.serve` writes into the URL of a request that names none, `localhost` and
 * the port it listens on (none on port 80, which the URL parser drops): an HTTP/1.1 request
 * without Host (RFC 9112 §3.2: a server MUST answer 400) was routed as sent to `localhost:8000`,
 * and the app got that as X-Forwarded-Host, the listener's own port in its redirects. An HTTP/2
 * request with `:authority: localhost` or `localhost:8000` looks the same to the handler and is
 * refused too.
 */
const DENO_SERVE_FALLBACK = /^localhost(?::\d+)?$/;

/**
 * Reads the request once: the public host (a trusted proxy's `X-Forwarded-Host`, else the `Host`
 * header, else the URL's), the client address behind the configured trusted proxies, and what
 * forwarding adds upstream.
 */
export function viewRequest(
  request: Request,
  config: Config,
  options: {
    remoteIp: string;
    requestId?: string;
    /**
     * The scheme of the listener the request came in on. Not `request.url`'s: for an
     * absolute-form target (`GET https://host/ HTTP/1.1`) Deno.serve takes the client's word.
     */
    scheme?: "http" | "https";
    /** `request.url` parsed, when the caller already has it. */
    url?: URL;
  },
): RequestView {
  checkMethod(request.method);
  const headers = new HeaderList(request.headers);
  let host = headers.get("host");
  // Deno.serve builds `request.url` from `Host` unchecked: `Host: a/zz` would turn the path
  // `/admin` into `/zz/admin`, upstream and in the Location rewrite, and a port over 65535 or a
  // bad IPv6 literal makes it unparsable. Either is the client's error.
  const url = options.url ?? requestUrl(request.url);
  // With an absolute-form target the URL is the client's, not the Host's: the Host must parse too
  // (`999.999.999.999` fits the pattern), a malformed one being the client's error whichever wins.
  if (
    !url ||
    (host !== null &&
      (!VALID_HOST.test(host) || (host !== url.host && !URL.canParse(`http://${host}/`))))
  ) {
    throw new HttpError(400, "bad_host", "The Host header is not a host name or address");
  }
  // Deno.serve keeps an absolute-form target of any scheme (`GET foo://host/x/..\admin`), whose
  // path the URL parser reads with `\` as a plain character, while `fetch` reads the same text
  // on the http origin with `\` as `/`: the app got `/admin` past a rule for it.
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new HttpError(400, "bad_path", "The request target is neither a path nor an http(s) URL");
  }
  // The URL's authority is the request's host: HTTP/2 carries it as `:authority`, which Deno.serve
  // puts in the URL but not in the headers (a `match.headers.host` rule sees it as Host, as nginx
  // and Envoy give it), and it wins over a Host naming another host, in an HTTP/2 request (RFC
  // 9113 §8.3.1) or beside an absolute-form target (RFC 9112 §3.2.2), as Deno.serve reads both.
  // An HTTP/2 `:authority` or an absolute-form target's host gets the Host check too: the URL
  // parser takes `app.example(`, which a Host is refused for.
  if (!VALID_HOST.test(url.host)) {
    throw new HttpError(400, "bad_host", "The request's authority is not a host name or address");
  }
  if (host === null && DENO_SERVE_FALLBACK.test(url.host)) {
    throw new HttpError(400, "bad_host", "The request has no Host header");
  }
  if (host === null) {
    // HTTP/2: Deno.serve aborts its request's signal for a client that resets the stream or
    // leaves only if the signal exists by then (HTTP/1.1's, made late, still reports it), and
    // vestibule first asks once the answer is in (499 `client_closed`).
    void request.signal;
    headers.pairs.push(["host", host = url.host]);
  } else if (host !== url.host && new URL(`${url.protocol}//${host}/`).host !== url.host) {
    for (const pair of headers.pairs) if (pair[0] === "host") pair[1] = url.host;
    host = url.host;
  }
  // Behind trusted proxies the client saw the host and scheme they report, so `match.host`,
  // redirects and cookie domains must use those, not the address the last proxy dialled.
  const hops = config.trustedProxyHops;
  const forwardedHost = hops > 0 ? vouchedFor(headers.get("x-forwarded-host"), hops) : undefined;
  if (forwardedHost !== undefined && !routable(forwardedHost)) {
    throw new HttpError(400, "bad_host", "The X-Forwarded-Host is not a host name or address");
  }
  const publicHost = forwardedHost ?? host ?? url.host;
  const forwardedProto = hops > 0
    ? vouchedFor(headers.get("x-forwarded-proto"), hops)?.toLowerCase()
    : undefined;
  const proto = forwardedProto === "http" || forwardedProto === "https"
    ? forwardedProto
    : options.scheme ?? "http";
  if (cameThroughVestibule(headers.get("via"), config.via.pseudonym)) {
    throw new HttpError(
      508,
      "loop_detected",
      `This request already passed through this vestibule (Via: ${config.via.entry}): an upstream's origin points back at the edge`,
    );
  }
  refuseBodyOf(request.method, headers);
  refuseTransferCodingOf(headers);
  // A body with neither length nor chunks is HTTP/2's, which Deno.serve ends as if whole when its
  // client resets the stream or leaves: only a signal made before that reports it (clientCut).
  // (HTTP/1.1 such requests carry no body; GET and HEAD bodies are refused.)
  if (request.method !== "GET" && request.method !== "HEAD" && !declaresBody(headers)) {
    void request.signal;
  }
  refusePathOf(url.pathname, config.paths);
  const address = clientAddress(
    headers.get("x-forwarded-for"),
    options.remoteIp,
    config.trustedProxyHops,
  );
  return {
    url,
    headers,
    facts: {
      method: request.method,
      // `admin.example.com.` names the same host (nginx drops the dot too).
      hostname: publicHost.replace(/:\d+$/, "").replace(/\.$/, "").toLowerCase(),
      path: routedPath(url),
      searchParams: queryAsAppsRead(url),
      headers,
    },
    clientIp: address.clientIp,
    forward: {
      publicHost,
      proto,
      forwardedFor: address.forwardedFor,
      clientIp: address.clientIp,
      trustForwarded: config.trustedProxyHops > 0,
      pinHeader: config.pin.header,
      pinCookie: config.pin.cookie,
      via: config.via.entry,
      requestId: options.requestId,
    },
  };
}

/**
 * The entry of a comma-separated `X-Forwarded-Host`/`-Proto` that the outermost of `hops`
 * trusted proxies wrote, counted from the right as for `X-Forwarded-For`: a proxy that appends
 * rather than replaces leaves the client's own value to the left, where it is ignored.
 */
function vouchedFor(value: string | null, hops: number): string | undefined {
  if (!value) return undefined;
  const entries = value.split(",");
  return entries[Math.max(0, entries.length - hops)].trim() || undefined;
}

/**
 * A trusted proxy's `X-Forwarded-Host` when it is a host the router would route by, else
 * `undefined`: what the access log names for requests answered before routing (vestibule's own
 * paths, OCAP, a refused path or method), as it names the routed host for the others.
 */
export function forwardedHostOf(headers: Headers, hops: number): string | undefined {
  if (hops === 0) return undefined;
  const host = vouchedFor(headers.get("x-forwarded-host"), hops);
  return host !== undefined && routable(host) ? host : undefined;
}

/**
 * Whether a proxy-reported host is one the router takes: `host[:port]`, and one the URL parser
 * takes too (a port over 65535 fits the pattern), since Location rewrites build URLs from it.
 */
function routable(host: string): boolean {
  return VALID_HOST.test(host) && URL.canParse(`http://${host}/`);
}

/**
 * Refuses a method the router cannot route and forward as it came (`HttpError` 400 or 405).
 * nginx's rule for a method: upper-case letters, `_` and `-`. Matching and forwarding must see the
 * same method, and `fetch` upper-cases `post` but sends `patch` as it is, so `post` would skip a
 * `POST` rule yet reach the app as a POST. TRACE, TRACK and CONNECT `fetch` refuses to send
 * (Deno.serve refuses only an origin-form CONNECT itself; `CONNECT host:443`, an open-proxy
 * probe, reaches the router): they are the client's error, not a failing upstream.
 */
export function checkMethod(method: string): void {
  if (!METHOD.test(method)) {
    throw new HttpError(400, "bad_method", "The method must be upper-case letters, _ or -");
  }
  if (method === "TRACE" || method === "TRACK" || method === "CONNECT") {
    // As nginx answers, without the `Allow` list RFC 9110 asks of a 405: only the app knows it,
    // and a 5xx would count a scanner's probes as vestibule's failures.
    throw new HttpError(405, "method_not_allowed", `vestibule does not forward ${method}`);
  }
}

const METHOD = /^[A-Z_-]+$/;

/**
 * Throws 400 `body_not_allowed` for a GET or HEAD whose headers announce a body (a
 * `Content-Length` of 0 is none): `fetch` cannot send one, and dropping it would hand the
 * upstream another request than the client's.
 */
export function refuseBodyOf(
  method: string,
  headers: { get(name: string): string | null },
): void {
  if (method !== "GET" && method !== "HEAD") return;
  const length = headers.get("content-length");
  if ((length !== null && length !== "0") || headers.get("transfer-encoding") !== null) {
    throw new HttpError(400, "body_not_allowed", `vestibule cannot forward a ${method} body`);
  }
}

/**
 * Throws 501 `transfer_coding_not_implemented` for a body framed with a transfer coding besides
 * `chunked` (`gzip, chunked`): Deno.serve takes off the chunks only and leaves the coding on the
 * bytes, and `Transfer-Encoding` is hop-by-hop, so the app would get coded bytes nothing labels.
 * RFC 9112 §6.1; nginx answers 501 too.
 */
export function refuseTransferCodingOf(headers: { get(name: string): string | null }): void {
  const transfer = headers.get("transfer-encoding");
  if (transfer !== null && !onlyChunked(transfer)) {
    throw new HttpError(
      501,
      "transfer_coding_not_implemented",
      `vestibule cannot forward a body with Transfer-Encoding "${transfer}"`,
    );
  }
}

/**
 * The query of `request.url` as the client sent it, `?` included, or "" without one: Deno.serve
 * keeps the target raw there (the URL parser would re-encode `'` as `%27`), a `#fragment` the
 * client sent too, and a `?` in that starts no query.
 */
export function rawQuery(rawUrl: string): string {
  const at = rawUrl.indexOf("?");
  if (at === -1) return "";
  const hash = rawUrl.indexOf("#");
  if (hash === -1) return rawUrl.slice(at);
  return at < hash ? rawUrl.slice(at, hash) : "";
}

/** The request target of `request.url` as the client sent it: path, query and all, no origin. */
export function rawTarget(rawUrl: string): string {
  return rawUrl.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, "");
}
