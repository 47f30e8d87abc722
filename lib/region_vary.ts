/**
 * @module `Vary` for a regional answer a shared cache may store. The edge chose its region by
 * request headers the app never sees (the pin header and cookie, the CDN's country header), so
 * only the edge can name them: without them a cache in front keys the answer by its URL alone,
 * and one request pinned to AU fills every visitor's entry with AU's page (RFC 9111 §4.1).
 */
import { cgiName, hasCgiSeparator } from "./cgi_name.ts";
import type { Config } from "./compile_rules.ts";
import type { HeaderReader } from "./header_list.ts";

/**
 * `response` with the headers that chose its region, and those that chose its rule
 * (`chosenBy`, with the copies `headers` holds: {@linkcode chosenByIn}), appended to `Vary` when
 * a shared cache may store it; otherwise `response` itself, uncopied (a copy costs requests/s,
 * and most dynamic pages say `private` or nothing). A region from `geo.ip_lookup` has no header
 * to name: see the README.
 */
export function varyByRegionChoice(
  response: Response,
  method: string,
  config: Config,
  chosenBy: readonly string[],
  headers: HeaderReader,
): Response {
  // Cheapest first: one region and no header-chosen rule is the bench's case; most answers are
  // not stored, and they pay for nothing more.
  if (config.regions.size < 2 && chosenBy.length === 0) return response;
  if (!sharedCacheMayStore(response, method)) return response;
  const names = config.regions.size < 2
    ? []
    : [config.pin.header, "cookie", ...(config.geo.header ? [config.geo.header] : [])];
  for (const name of chosenByIn(chosenBy, headers)) if (!names.includes(name)) names.push(name);
  return appendVary(response, names);
}

/**
 * `response` with `chosenBy` (and the copies `headers` holds) appended to `Vary` when a shared
 * cache may store it: a `global` rule's answer, chosen over another rule's by request headers the
 * website may never see (a session cookie outside `forward_cookies`), so only the edge can name
 * them.
 */
export function withVary(
  response: Response,
  method: string,
  chosenBy: readonly string[],
  headers: HeaderReader,
): Response {
  if (chosenBy.length === 0 || !sharedCacheMayStore(response, method)) return response;
  return appendVary(response, chosenByIn(chosenBy, headers));
}

/**
 * `chosenBy` and, when the request holds them, the other spellings of those names that CGI-style
 * servers read as the same header (`x_beta`, `x.beta`): `match.headers` requires them to match
 * too, so they chose the rule as well. Only a request that sends such a copy pays for more.
 */
export function chosenByIn(chosenBy: readonly string[], headers: HeaderReader): readonly string[] {
  if (chosenBy.length === 0) return chosenBy;
  const spelledWithSeparator = chosenBy.some(hasCgiSeparator);
  let names: string[] | undefined;
  headers.forEach((_, name) => {
    if (!spelledWithSeparator && !hasCgiSeparator(name)) return;
    if (chosenBy.includes(name) || names?.includes(name)) return;
    const dashed = cgiName(name);
    if (chosenBy.some((chosen) => chosen.length === name.length && cgiName(chosen) === dashed)) {
      (names ??= [...chosenBy]).push(name);
    }
  });
  return names ?? chosenBy;
}

function appendVary(response: Response, names: readonly string[]): Response {
  if (names.length === 0) return response;
  const vary = response.headers.get("vary");
  if (vary?.trim() === "*") return response;
  const copy = new Response(response.body, response);
  // One line: a cache that reads only the first of several `Vary` lines still sees them all.
  copy.headers.set("vary", vary ? `${vary}, ${names.join(", ")}` : names.join(", "));
  return copy;
}

/**
 * Whether a shared cache may store the answer (RFC 9111 §3, §5.2.2): a GET or HEAD, not a 1xx
 * (a WebSocket's 101), with freshness or a validator to reuse it by, and no `no-store` or
 * unqualified `private` (`private="set-cookie"` only keeps that header out of the cache). A CDN
 * obeys its own field over `Cache-Control` (RFC 9213 `CDN-Cache-Control`; Fastly and Akamai also
 * `Surrogate-Control`), so one that lets it store counts whatever `Cache-Control` says. An answer
 * with no caching header at all is not counted, though some CDNs store those too (see the
 * README): copying every answer to add the header costs requests/s.
 */
function sharedCacheMayStore(response: Response, method: string): boolean {
  if ((method !== "GET" && method !== "HEAD") || response.status < 200) return false;
  const h = response.headers;
  for (const name of CDN_FIELDS) {
    const field = h.get(name);
    if (field !== null && !NOT_STORED.test(field)) return true;
  }
  const cacheControl = h.get("cache-control");
  if (cacheControl === null) return h.has("expires") || h.has("last-modified") || h.has("etag");
  return !NOT_STORED.test(cacheControl);
}

const CDN_FIELDS = ["cdn-cache-control", "surrogate-control"];

const NOT_STORED = /(?:^|,)\s*(?:no-store|private(?!\s*=))\s*(?:,|$)/i;
