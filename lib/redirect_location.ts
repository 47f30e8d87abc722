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
  const query = template.indexOf("?");
  const fragment = template.indexOf("#");
  const location = template.replace(/\$(\d)/g, (_, n: string, at: number) => {
    const text = groups?.[Number(n)] ?? "";
    // Path text in a query value: `&`, `+`, `=` and `;` would split it or read as a space.
    const inQuery = query !== -1 && at > query && (fragment === -1 || at < fragment);
    return inQuery
      ? text.replace(/[&+=;]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
      : text;
  });
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
 * (`https://$1.example.com/`, `https://help-$1.example.com$2`) must keep its literal parts, each
 * group inside it filling only host characters and one at its end (`$2`) adding nothing to it;
 * a host that is one group (`https://$1/`) chose that.
 */
function keepsTarget(template: string, location: string): boolean {
  const at = template.search(/\$\d/);
  if (at === -1) return true;
  const authority = AUTHORITY.exec(template);
  if (!authority) {
    return CLIENT_BASES.every((base) => URL.parse(location, base)?.host === "vestibule.invalid");
  }
  if (at >= authority[0].length) {
    // A literal host, then a path: the groups cannot reach the host.
    const origin = URL.parse(template.slice(0, at), CLIENT_BASES[1])?.origin;
    return origin === undefined || origin === "null" ||
      URL.parse(location, CLIENT_BASES[1])?.origin === origin;
  }
  // Groups in the authority: the location's must be the template's with them filled in.
  const parts = authority[1].split(/\$\d/);
  if (parts.at(-1) === "") parts.pop(); // a group ending the authority adds nothing to it
  if (parts.every((part) => part === "")) return true; // a host of groups: the template chose
  const pattern = new RegExp(`^${parts.map(escapeRegex).join("[^/?#@\\\\]*")}$`, "i");
  const filled = AUTHORITY.exec(location);
  return filled !== null && pattern.test(filled[1]) && URL.canParse(location, CLIENT_BASES[1]);
}

function escapeRegex(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
}
