/** @module Where a `global` redirect rule sends the client. */
import { HttpError } from "./http_error.ts";
import { rawQuery } from "./request_view.ts";
import type { RouteContext } from "./route_context.ts";

/**
 * Substitutes `$1`… with the path regex groups and keeps the query string unless the target
 * has its own, so `/help/x?lang=fr` lands on the same page of the new site. Throws `HttpError`
 * 400 `redirect_refused` when the groups would take the client to another host than the
 * template names (an open redirect).
 */
export function redirectLocation(
  template: string,
  ctx: Pick<RouteContext, "match" | "pathAndQuery"> & { request: Pick<Request, "url"> },
): string {
  const groups = ctx.match.pathMatch;
  const location = template.replace(/\$(\d)/g, (_, n: string) => groups?.[Number(n)] ?? "");
  if (!keepsTarget(template, location)) {
    throw new HttpError(400, "redirect_refused", "This path would redirect to another host");
  }
  // A `#fragment` of the template stays last: a query after it would never reach the server.
  const hash = location.indexOf("#");
  const base = hash === -1 ? location : location.slice(0, hash);
  if (base.includes("?")) return location;
  return base + clientQuery(ctx.request.url, ctx.pathAndQuery) + location.slice(base.length);
}

/**
 * The query exactly as the client sent it, so a signed link still verifies; one with bytes a
 * header value cannot carry goes as the URL parser encoded it.
 */
function clientQuery(rawUrl: string, pathAndQuery: string): string {
  const raw = rawQuery(rawUrl);
  if (/^[\x21-\x7e]*$/.test(raw)) return raw;
  const parsed = pathAndQuery.indexOf("?");
  return parsed === -1 ? "" : pathAndQuery.slice(parsed);
}

/** Bases for resolving a relative location: it must stay on whatever host the client used. */
const CLIENT_BASES = ["http://vestibule.invalid/", "https://vestibule.invalid/"];

/** An absolute or protocol-relative URL's scheme and authority (up to `/`, `?`, `#` or `\`). */
const AUTHORITY = /^(?:[a-z][a-z0-9+.-]*:)?[\\/]{2}([^/?#\\]*)/i;

/**
 * Whether the substituted groups left the target's host alone. A group glued to the host
 * (`https://help.example.com$1` with `$1` = `@evil.example` or `.evil.example`), or one that makes
 * a relative location protocol-relative (`/$1` with `$1` = `/evil.example`, or a backslash, which
 * URL parsers read as a slash), would send the client elsewhere. A host built around groups
 * (`https://$1.example.com/`, `https://help-$1.example.com/`) must keep its literal parts, each
 * group filling only host characters; a host that is all groups (`https://$1/`) chose that.
 */
function keepsTarget(template: string, location: string): boolean {
  const at = template.search(/\$\d/);
  if (at === -1) return true;
  const authority = AUTHORITY.exec(template);
  if (authority) {
    const parts = authority[1].split(/\$\d/);
    if (at < authority[0].length && parts.at(-1) !== "") {
      // Groups inside the host, literal text after the last: no `/ ? # @ \` from a group, so
      // the authority the client gets is the template's with the groups filled in.
      const pattern = new RegExp(`^${parts.map(escapeRegex).join("[^/?#@\\\\]*")}$`, "i");
      const filled = AUTHORITY.exec(location);
      return filled !== null && pattern.test(filled[1]) && URL.canParse(location);
    }
    // The host is literal, or ends in a group (which must not extend it): same origin.
    const origin = URL.parse(template.slice(0, at), CLIENT_BASES[1])?.origin;
    if (origin === undefined || origin === "null") return true;
    return URL.parse(location, CLIENT_BASES[1])?.origin === origin;
  }
  return CLIENT_BASES.every((base) => URL.parse(location, base)?.host === "vestibule.invalid");
}

function escapeRegex(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
}
