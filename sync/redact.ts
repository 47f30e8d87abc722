/** @module Redaction of database URLs so passwords never reach logs or errors. */

/**
 * Return `url` with its password replaced by `***`; an unparseable URL is hidden whole,
 * because it may still contain a secret.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    for (const key of [...parsed.searchParams.keys()]) {
      if (/pass/i.test(key)) parsed.searchParams.set(key, "***");
    }
    return parsed.toString();
  } catch {
    return "<unparseable database URL>";
  }
}
