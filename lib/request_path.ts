/**
 * @module The request path as vestibule reads it, matches it and forwards it: one form for all
 * three, so a rule and the app behind it cannot read one target as two paths.
 */
import { HttpError } from "./http_error.ts";

/** What the rules file allows in paths (`paths`); everything else is refused. */
export interface PathPolicy {
  allowEncodedSlashes: boolean;
  allowSemicolons: boolean;
}

/**
 * `raw` parsed as the URL parser reads it (dot segments resolved, `\` read as `/`) with runs of
 * `/` merged, as nginx's `merge_slashes` and Envoy's do: Rails, Tomcat and nginx in front of an
 * app route `//admin` as `/admin`, which a rule for `^/admin` would not see. The merged path is
 * the one matched, logged and sent upstream.
 */
export function requestUrl(raw: string): URL | undefined {
  const url = URL.parse(raw);
  return url ? mergeSlashes(url) : undefined;
}

/** `url` with runs of `/` in its path merged into one. */
export function mergeSlashes(url: URL): URL {
  if (url.pathname.includes("//")) url.pathname = url.pathname.replace(/\/{2,}/g, "/");
  return url;
}

/**
 * Refuses (400 `bad_path`) a path that apps behind vestibule read as another path than the one
 * its rules match: an encoded `/` or `\` (`%2F`, `%5C`), which WSGI servers (Django, Flask) and
 * Laravel decode before routing, so `/admin%2F` is their `/admin/`; and a `;`, whose path
 * parameters servlet containers (Tomcat, Jetty, Spring) strip before routing, so `/admin;x=1`
 * and `/x/..;/admin` are their `/admin`. Spring Security's firewall refuses both by default too.
 */
export function refusePathOf(pathname: string, policy: PathPolicy): void {
  if (
    !policy.allowEncodedSlashes && pathname.includes("%") && /%(?:2f|5c)/i.test(pathname)
  ) {
    throw new HttpError(
      400,
      "bad_path",
      "The path holds an encoded / or \\ (%2F, %5C), which apps read as a path separator",
    );
  }
  if (!policy.allowSemicolons && pathname.includes(";")) {
    throw new HttpError(
      400,
      "bad_path",
      "The path holds a ';', whose parameters servlet containers strip before routing",
    );
  }
}
