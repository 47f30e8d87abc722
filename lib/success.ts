/** @module Decides whether an upstream answer matches a success rule (broadcast, `pin_on`). */
import {
  brotliDecompressSync,
  gunzipSync,
  inflateRawSync,
  inflateSync,
  zstdDecompressSync,
} from "node:zlib";
import { isIP } from "node:net";
import type { SuccessRule } from "./compile_rules.ts";
import { emptyStream, NULL_BODY_STATUSES } from "./forward.ts";
import { HttpError } from "./http_error.ts";
import { deepEqual } from "./match_rule.ts";
import { browserTrim } from "./cookies.ts";
import { joinChunks, type PartialRead, readUpTo } from "./request_body.ts";

/** The verdict, and the response to use from now on (rebuilt when its body had to be read). */
export interface SuccessVerdict {
  success: boolean;
  response: Response;
}

/** What {@linkcode checkSuccess} needs besides the rule and the answer. */
export interface SuccessOptions {
  /** Wall-clock milliseconds since the epoch, for `Set-Cookie` expiry. */
  now: number;
  /** The request the answer is for: where a `Set-Cookie` without `Domain` or `Path` applies. */
  cookieScope?: CookieScope;
  /** The most body a `json` check reads (`body_limit_bytes`). */
  bodyLimit: number;
  /**
   * When a body a `json` check reads must have arrived, on the `performance.now()` clock: the
   * upstream's timeout covers the body it is judged by, not only the headers.
   */
  deadline: number;
}

/**
 * Cheap checks (status, cookies, headers) run first; the body is read only for a `json` check,
 * bounded by `bodyLimit` and `deadline`, and the response is rebuilt from the same bytes so the
 * client still gets it intact. A body that is not JSON, or too large to judge, is simply not a
 * success, and a large one still reaches the client whole. Throws `HttpError` 504
 * `upstream_timeout` when the body stalls past the deadline, 502 `upstream_unavailable` when it
 * breaks off.
 */
export async function checkSuccess(
  rule: SuccessRule,
  response: Response,
  options: SuccessOptions,
): Promise<SuccessVerdict> {
  if (!matchesWithoutBody(rule, response, options.now, options.cookieScope)) {
    return { success: false, response };
  }
  if (!rule.json) return { success: true, response };
  if (Number(response.headers.get("content-length")) > options.bodyLimit) {
    return { success: false, response };
  }
  const peeked = await peekBounded(response.body, options.bodyLimit, options.deadline);
  const init = {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  };
  if ("rest" in peeked) return { success: false, response: new Response(peeked.rest, init) };
  const { bytes } = peeked;
  // 101/103/204/205/304 must not carry a body, even an empty one.
  const nullBody = NULL_BODY_STATUSES.has(response.status);
  // No bytes and no length (a HEAD's empty stream): still no length, not a Content-Length: 0.
  const open = bytes.length === 0 && !response.headers.has("content-length");
  const rebuilt = new Response(nullBody ? null : open ? emptyStream() : bytes, init);
  let parsed: unknown;
  try {
    parsed = JSON.parse(
      new TextDecoder().decode(decoded(bytes, response, options.bodyLimit)),
    );
  } catch {
    return { success: false, response: rebuilt };
  }
  const { path, hasEquals, equals, exists } = rule.json;
  const found = lookupPath(parsed, path);
  const success = hasEquals
    ? found.present && deepEqual(found.value, equals)
    : found.present === exists;
  return { success, response: rebuilt };
}

/**
 * Reads the body up to `limit` bytes, before `deadline`. Within the limit: the bytes. Over it: a
 * stream that replays what was read and then the rest, so the caller can still pass the whole
 * body on.
 */
async function peekBounded(
  body: ReadableStream<Uint8Array<ArrayBuffer>> | null,
  limit: number,
  deadline: number,
): Promise<{ bytes: Uint8Array<ArrayBuffer> } | { rest: ReadableStream<Uint8Array> }> {
  if (!body) return { bytes: new Uint8Array(0) };
  let read: PartialRead;
  try {
    read = await readUpTo(body, limit, {
      ms: deadline - performance.now(),
      error: () =>
        new HttpError(504, "upstream_timeout", "The answer's body did not arrive in time"),
    });
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new HttpError(502, "upstream_unavailable", "The answer's body broke off", {
      cause: error,
    });
  }
  const { chunks, rest } = read;
  if (!rest) return { bytes: joinChunks(chunks, read.total) };
  return {
    rest: new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = chunks.shift() ?? (await rest.read()).value;
        if (next) controller.enqueue(next);
        else controller.close();
      },
      cancel: (reason) => rest.cancel(reason),
    }),
  };
}

/**
 * The body as the application wrote it, decoded with the `Content-Encoding` the client will get
 * (bounded by `limit`, against zip bombs): vestibule re-compresses a body `fetch` decoded as gzip,
 * and passes through what `fetch` does not decode, such as the zstd today's browsers ask for.
 * `deflate` may be zlib-wrapped or raw: browsers accept both, so a region may send either.
 */
function decoded(bytes: Uint8Array<ArrayBuffer>, response: Response, limit: number): Uint8Array {
  const encoding = response.headers.get("content-encoding")?.trim().toLowerCase();
  const options = { maxOutputLength: limit };
  switch (encoding) {
    case undefined:
    case "":
    case "identity":
      return bytes;
    case "gzip":
    case "x-gzip":
      return gunzipSync(bytes, options);
    case "deflate":
      try {
        return inflateSync(bytes, options);
      } catch (error) {
        if (error instanceof RangeError) throw error;
        return inflateRawSync(bytes, options);
      }
    case "br":
      return brotliDecompressSync(bytes, options);
    case "zstd":
      return zstdDecompressSync(bytes, options);
    default:
      throw new TypeError(`Cannot judge a body in the "${encoding}" coding`);
  }
}

/** The status, `Set-Cookie` and header parts of a success rule. */
export function matchesWithoutBody(
  rule: SuccessRule,
  response: Response,
  now: number,
  scope?: CookieScope,
): boolean {
  if (rule.status) {
    const ok = rule.status instanceof Set
      ? rule.status.has(response.status)
      : Math.floor(response.status / 100) === (rule.status as { class: number }).class;
    if (!ok) return false;
  }
  if (
    rule.setCookie &&
    !setsLiveCookie(response.headers.getSetCookie(), rule.setCookie, now, scope)
  ) return false;
  if (rule.headers) {
    for (const [name, regex] of rule.headers) {
      const value = response.headers.get(name);
      if (value === null || !regex.test(value)) return false;
    }
  }
  return true;
}

/** The request a `Set-Cookie` answers: the public host name and the URL path. */
export interface CookieScope {
  host: string;
  path: string;
}

/**
 * Whether the `Set-Cookie` values leave `name` set to a non-empty value that is not already
 * expired: a logout answer that clears `sessionid` must not count as a login. As in a cookie
 * store, a later line for the same name, domain (host-only or not) and path replaces an earlier
 * one; a line without `Domain` is the request host's alone, one without `Path` (or with one not
 * starting with `/`) has the request path's default path (RFC 6265 §5.1.4, RFC 6265bis §5.7).
 */
export function setsLiveCookie(
  setCookies: string[],
  name: string,
  now: number,
  scope: CookieScope = { host: "", path: "/" },
): boolean {
  const live = new Map<string, boolean>();
  for (const line of setCookies) {
    const [pair, ...attributes] = line.split(";");
    const eq = pair.indexOf("=");
    if (eq === -1 || browserTrim(pair.slice(0, eq)) !== name) continue;
    const rawValue = browserTrim(pair.slice(eq + 1));
    // RFC 6265bis §5.7 step 3: a name and value over 4096 octets together are not stored.
    if (tooLarge(name, rawValue)) continue;
    const value = rawValue.replace(/^"(.*)"$/, "$1");
    let maxAge: number | undefined;
    let expires: number | undefined;
    let path = defaultPath(scope.path);
    const host = scope.host.toLowerCase();
    let domain: string | undefined;
    let secure = false;
    let pathAttribute: string | undefined;
    let sameSiteNone = false;
    for (const attribute of attributes) {
      const [key, ...rest] = attribute.split("=");
      const attrValue = rest.join("=").trim();
      const attr = key.trim().toLowerCase();
      if (attr === "max-age" && /^-?\d+$/.test(attrValue)) maxAge = Number(attrValue);
      if (attr === "expires" && !Number.isNaN(cookieDate(attrValue))) {
        expires = cookieDate(attrValue);
      }
      // The last Path wins, also an empty or relative one, which stands for the default path.
      if (attr === "path") {
        pathAttribute = attrValue;
        path = attrValue.startsWith("/") ? attrValue : defaultPath(scope.path);
      }
      if (attr === "domain" && attrValue) domain = attrValue.replace(/^\./, "").toLowerCase();
      if (attr === "secure") secure = true;
      // The last SameSite wins.
      if (attr === "samesite") sameSiteNone = attrValue.toLowerCase() === "none";
    }
    if (!browserKeeps(name, { host, domain, pathAttribute, secure })) continue;
    // Chrome and Edge refuse `SameSite=None` without `Secure` (RFC 6265bis §5.6.7 lets them).
    if (sameSiteNone && !secure) continue;
    // RFC 6265 §5.3 step 3: Max-Age wins over Expires.
    const alive = maxAge !== undefined ? maxAge > 0 : expires === undefined || expires > now;
    // A host-only cookie and a `Domain` one are two cookies (RFC 6265bis, Chrome, Firefox); on an
    // IP address host, `Domain=<it>` makes a host-only cookie.
    const hostOnly = domain === undefined || (domain === host && isIP(bare(host)) !== 0);
    live.set(`${hostOnly ? host : `.${domain}`}\n${path}`, value !== "" && alive);
  }
  return [...live.values()].some(Boolean);
}

/**
 * Whether a browser stores the cookie at all, rather than ignoring the line: its `Domain` must
 * domain-match the page's host (RFC 6265 §5.3 step 6; an IP address only itself), and the name
 * prefixes hold (RFC 6265bis §4.1.3, in any letter case): `__Secure-` needs `Secure`, `__Host-`
 * needs `Secure`, a `Path=/` attribute and no `Domain`. (A `Secure` cookie set over http is not judged here:
 * vestibule may not know that TLS ended in front of it.)
 */
function browserKeeps(
  name: string,
  cookie: { host: string; domain?: string; pathAttribute?: string; secure: boolean },
): boolean {
  const { host, domain } = cookie;
  if (domain !== undefined && host !== "" && domain !== host) {
    if (isIP(bare(host)) !== 0 || !host.endsWith(`.${domain}`)) return false;
  }
  const lower = name.toLowerCase();
  if (lower.startsWith("__secure-") && !cookie.secure) return false;
  if (lower.startsWith("__host-")) {
    // The attributes must hold `Path=/` itself: a default path of "/" is not enough.
    return cookie.secure && domain === undefined && cookie.pathAttribute === "/";
  }
  return true;
}

/**
 * Whether a cookie's name and value together pass the 4096 octets browsers store. Header text
 * holds one character per octet received (`fetch` reads the bytes as Latin-1: é sent in UTF-8
 * is "Ã©"), so its length is the octets; encoding it again as UTF-8 counted them twice.
 */
function tooLarge(name: string, value: string): boolean {
  return name.length + value.length > 4096;
}

/** A host without the brackets of an IPv6 literal. */
function bare(host: string): string {
  return host.replace(/^\[|\]$/g, "");
}

/** RFC 6265 §5.1.4: the request path up to, not including, its last `/`; `/` at the least. */
function defaultPath(requestPath: string): string {
  const last = requestPath.lastIndexOf("/");
  return last <= 0 ? "/" : requestPath.slice(0, last);
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/** An `Expires` value parsed as browsers do (RFC 6265 §5.1.1), or `NaN`. */
export function cookieDate(value: string): number {
  let time: number[] | undefined;
  let day: number | undefined;
  let month: number | undefined;
  let year: number | undefined;
  for (const token of value.split(/[\t\x20-\x2F\x3B-\x40\x5B-\x60\x7B-\x7E]+/)) {
    if (!token) continue;
    let m: RegExpExecArray | null;
    if (!time && (m = /^(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\D|$)/.exec(token))) {
      time = [Number(m[1]), Number(m[2]), Number(m[3])];
    } else if (day === undefined && (m = /^(\d{1,2})(?:\D|$)/.exec(token))) {
      day = Number(m[1]);
    } else if (month === undefined && MONTHS.includes(token.slice(0, 3).toLowerCase())) {
      month = MONTHS.indexOf(token.slice(0, 3).toLowerCase());
    } else if (year === undefined && (m = /^(\d{2,4})(?:\D|$)/.exec(token))) {
      year = Number(m[1]);
      if (year >= 70 && year <= 99) year += 1900;
      else if (year <= 69) year += 2000;
    }
  }
  if (!time || day === undefined || month === undefined || year === undefined) return NaN;
  if (day < 1 || day > 31 || year < 1601 || time[0] > 23 || time[1] > 59 || time[2] > 59) {
    return NaN;
  }
  const date = Date.UTC(year, month, day, time[0], time[1], time[2]);
  // "Feb 31" names no date: RFC 6265 fails it, where Date.UTC would roll over into March.
  return new Date(date).getUTCDate() === day ? date : NaN;
}

/** Follows a dotted path (`data.signup.ok`, `errors.0.message`) into a JSON value. */
export function lookupPath(
  value: unknown,
  path: readonly string[],
): { present: boolean; value?: unknown } {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== "object" || !Object.hasOwn(current, key)) {
      return { present: false };
    }
    current = (current as Record<string, unknown>)[key];
  }
  return { present: true, value: current };
}
