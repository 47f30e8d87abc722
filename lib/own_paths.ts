/** @module The paths vestibule answers itself, before and instead of the rule table. */

import { matchablePath } from "./matchable_path.ts";

/** Where vestibule's own endpoints live: health and metrics. */
export const OWN_PREFIX = "/_vestibule/";

/**
 * What answers `path` (a {@linkcode routedPath}) when the rule table does not: `vestibule` for its
 * own endpoints (health, metrics, and 404 for anything else under {@linkcode OWN_PREFIX}), `ocap`
 * under OCAP's mount.
 */
export function servedBy(
  path: string,
  ocapPath: string | undefined,
): "vestibule" | "ocap" | undefined {
  if (path.startsWith(OWN_PREFIX)) return "vestibule";
  if (ocapPath !== undefined && (path === ocapPath || path.startsWith(`${ocapPath}/`))) {
    return "ocap";
  }
  return undefined;
}

/**
 * The path that decides who answers, that rules match and that the access log shows: the URL
 * parser's (dot segments resolved, as the upstream gets it) with unreserved escapes decoded. The
 * raw target would let `/a/../_vestibule/health` or `/%5Fvestibule/health` be judged one way and
 * served another.
 */
export function routedPath(url: URL): string {
  return matchablePath(url.pathname);
}
