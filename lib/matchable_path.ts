/** @module The form of a URL path that rules match against, shared by the router and the rules compiler. */

/**
 * The path rules match against: `%XX` escapes of unreserved characters decoded and the others
 * upper-cased (RFC 3986 §6.2.2), so `/%61bout` cannot slip past a rule for `/about` to the
 * catch-all while the origin serves it as `/about`. The upstream still gets the path as sent.
 */
export function matchablePath(pathname: string): string {
  if (!pathname.includes("%")) return pathname;
  return pathname.replace(/%[0-9A-Fa-f]{2}/g, (escape) => {
    const char = String.fromCharCode(parseInt(escape.slice(1), 16));
    return /[A-Za-z0-9\-._~]/.test(char) ? char : escape.toUpperCase();
  });
}
