/** @module Normalized form of a target URL for OCAP's dedup key. */
import { canonicalPairs } from "./form_pairs.ts";

const DEFAULT_PORTS: Readonly<Record<string, string>> = { "http:": "80", "https:": "443" };

/**
 * Normalizes an absolute URL: scheme and host lower-cased, default port dropped, query
 * parameters sorted by name (re-encoded, so `%20` and `+` agree) unless parsers would read them
 * differently, fragment dropped.
 * The path is kept as written: servers may treat its case and encoding as significant.
 */
export function normalizeUrl(value: string | URL): string {
  const url = new URL(value);
  const protocol = url.protocol.toLowerCase();
  const port = url.port && url.port !== DEFAULT_PORTS[protocol] ? `:${url.port}` : "";
  // A query parsers read differently stays as written; it cannot equal a canonical one, which
  // holds neither `;` nor a bare `%`.
  const raw = url.search.slice(1);
  const pairs = canonicalPairs(raw) ?? raw;
  const query = pairs ? `?${pairs}` : "";
  return `${protocol}//${url.hostname.toLowerCase()}${port}${url.pathname}${query}`;
}
