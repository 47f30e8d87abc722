/** @module The paths vestibule answers itself, before and instead of the rule table. */

/** Where vestibule's own endpoints live: health and metrics. */
const OWN_PREFIX = "/_vestibule/";

/**
 * What answers `path` when the rule table does not: `vestibule` for its own endpoints (health,
 * metrics, and 404 for anything else under {@linkcode OWN_PREFIX}), `ocap` under OCAP's mount.
 */
export function servedBy(
  path: string,
  ocapPath: string | undefined,
): "vestibule" | "ocap" | undefined {
  if (path.startsWith(OWN_PREFIX)) return "vestibule";
  if (ocapPath !== undefined && path.startsWith(ocapPath)) return "ocap";
  return undefined;
}
