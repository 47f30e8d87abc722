/** @module Maps `<path>/<target>/<rest>` onto a configured target's URL, refusing anything that could leave it. */
import { HttpError } from "../http_error.ts";

/** A configured OCAP target, compiled. */
export interface OcapTarget {
  name: string;
  /** `scheme://host[:port]`, from `parseOrigin`. */
  origin: string;
  ttlMs: number;
  timeoutMs: number;
}

/** The target a request is for and the URL OCAP will call. */
export interface ResolvedTarget {
  target: OcapTarget;
  url: URL;
}

/**
 * Resolves the raw request target (as received, before any normalization) under `mount`.
 *
 * Not an open proxy: the URL is built by setting only the path and query on the target's own
 * origin, and the path is refused (400 `ocap_bad_path`) when it holds anything a server or a URL
 * parser could read as another location: dot segments (also percent-encoded), encoded slashes or
 * backslashes, backslashes, empty segments (`//evil.test`, `https://…`), `@`, or control
 * characters. An unknown target is 404 `ocap_unknown_target`.
 */
export function resolveTarget(
  rawTarget: string,
  mount: string,
  targets: ReadonlyMap<string, OcapTarget>,
): ResolvedTarget {
  const queryAt = rawTarget.indexOf("?");
  const path = queryAt === -1 ? rawTarget : rawTarget.slice(0, queryAt);
  const query = queryAt === -1 ? "" : rawTarget.slice(queryAt);
  if (path === mount) throw unknownTarget();
  // The router sent it here by its resolved path: a raw path that is not under the mount got
  // there through dot segments or escapes (`/x/../_ocap/…`, `/%5Focap/…`). Refused as such, not
  // as an unknown target beside an access line naming one that exists.
  if (!path.startsWith(`${mount}/`)) throw badPath();
  const rest = path.slice(mount.length + 1);
  const segments = rest.split("/");
  const bad = segments.some((segment, i) => {
    const decoded = segment.replace(/%2e/gi, ".");
    return decoded === "." || decoded === ".." || (segment === "" && i < segments.length - 1);
  }) || /%2f|%5c|\\|@|%40|[^!-~]|%[01][0-9a-f]|%7f/i.test(rest);
  const slash = rest.indexOf("/");
  const name = slash === -1 ? rest : rest.slice(0, slash);
  // An escape in the name (`%67` for `g`) is read by the router as the target it spells.
  if (bad || name.includes("%")) throw badPath(name);
  const target = targets.get(name);
  if (!target) throw unknownTarget();
  const remainder = slash === -1 ? "/" : rest.slice(slash);

  const url = new URL(target.origin);
  url.pathname = remainder;
  url.search = query;
  if (url.origin !== target.origin) throw badPath(name);
  return { target, url };
}

function badPath(name?: string): HttpError {
  const what = name && /^[a-z0-9][a-z0-9_-]*$/.test(name) ? ` for target "${name}"` : "";
  return new HttpError(400, "ocap_bad_path", `Refusing OCAP path${what}`);
}

function unknownTarget(): HttpError {
  return new HttpError(404, "ocap_unknown_target", "No such OCAP target");
}
