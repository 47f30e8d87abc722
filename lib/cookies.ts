/** @module Filters a `Cookie` request header by cookie name without re-encoding what it keeps. */

/**
 * Returns the `Cookie` header with only the pairs whose name passes `keep`, or `undefined` when
 * none is left.
 *
 * Works on the raw `;`-separated pairs rather than a parse/serialize round trip, so a value the
 * app set in an unusual encoding reaches it byte for byte, and a malformed pair cannot make us
 * drop its well-formed neighbours. A piece without `=` has no name and is dropped.
 */
export function filterCookieHeader(
  header: string | null,
  keep: (name: string) => boolean,
): string | undefined {
  if (!header) return undefined;
  const kept: string[] = [];
  for (const piece of header.split(";")) {
    const eq = piece.indexOf("=");
    if (eq === -1) continue;
    const name = piece.slice(0, eq).trim();
    if (name && keep(name)) kept.push(piece.trim());
  }
  return kept.length > 0 ? kept.join("; ") : undefined;
}
