/** @module Byte-exact canonical form of urlencoded pairs (bodies and queries) for OCAP's dedup key. */

import { occursAtLeast } from "../request_body.ts";

const encoder = new TextEncoder();
const KEEP = /[A-Za-z0-9*._-]/;

/**
 * Parses `a=1&b=2` like `URLSearchParams` (split on `&`, first `=`, `+` is a space) but keeps the
 * decoded bytes: `%FF` and `%FE` are not both U+FFFD. Returns the pairs re-encoded canonically
 * and sorted by name, joined with `&`; `undefined` for text that parsers read differently, which
 * must be keyed as it is: a `;` (Go's `ParseQuery` refuses it, others split on it or keep it) or
 * a `%` that starts no escape (Go and Java refuse it, `URLSearchParams` keeps it), so that
 * `code=ab%GG` cannot share `code=ab%25GG`'s answer; for a name another may stand for
 * ({@linkcode MERGED_NAMES}); and for more than {@linkcode MAX_CANONICAL_PAIRS} pairs.
 */
export function canonicalPairs(text: string): string | undefined {
  if (text.includes(";") || /%(?![0-9A-Fa-f]{2})/.test(text)) return undefined;
  if (occursAtLeast(text, "&", MAX_CANONICAL_PAIRS)) return undefined;
  const pairs: string[][] = [];
  const names = new Map<string, string>();
  for (const part of text.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? "" : part.slice(eq + 1);
    const canonicalName = canonicalComponent(name);
    if (MERGED_NAMES.test(canonicalName)) return undefined;
    // ASP.NET Core reads names ignoring case (Duende IdentityServer and OpenIddict take the first).
    const folded = canonicalName.toLowerCase();
    if ((names.get(folded) ?? canonicalName) !== canonicalName) return undefined;
    names.set(folded, canonicalName);
    pairs.push([canonicalName, canonicalComponent(value)]);
  }
  // By name only: the sort is stable, so a repeated name keeps the order of its values, which
  // servers read (the first wins in Go and URLSearchParams, the last in Django and PHP).
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return pairs.map(([n, v]) => `${n}=${v}`).join("&");
}

/**
 * A name some servers read as part of another name, in canonical form: a `.` or a space (`+`),
 * which PHP turns into `_` (`client.id` is its `client_id`, the last one winning), a NUL (`%00`,
 * where PHP cuts a name), or a `[` or `]` (`%5B`, `%5D`: Rack and PHP build nested parameters in
 * arrival order), or a byte of a non-ASCII character (ASP.NET Core folds `é` and `É` into one
 * name). Sorted by name, two requests that such a server reads differently would share one
 * answer: they are keyed as written, as are names that differ only in letter case.
 */
const MERGED_NAMES = /[.+]|%5B|%5D|%00|%[89A-F][0-9A-F]/;

/**
 * The most `&`-separated pairs canonicalized; beyond, text is keyed as it is (identical requests
 * still share one key). No token exchange comes near it, and 524k pairs in a 1 MiB body cost
 * 1.2–1.5 s of CPU to re-encode and sort, for a caller holding the Ocap-Key.
 */
export const MAX_CANONICAL_PAIRS = 1000;

/** Each byte as it appears in a canonical component: kept, `+` for a space, or `%XX`. */
const CANONICAL_BYTE: readonly string[] = Array.from({ length: 256 }, (_, b) => {
  const ch = String.fromCharCode(b);
  if (b === 0x20) return "+";
  return b < 0x80 && KEEP.test(ch) ? ch : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
});

/**
 * One name or value, decoded to bytes and re-encoded canonically. The text is UTF-8-encoded
 * once and the escapes decoded on its bytes (`%`, `+` and hex digits are ASCII, one byte each):
 * encoding character by character cost about a microsecond per byte of a 1 MiB body.
 */
function canonicalComponent(raw: string): string {
  const bytes = encoder.encode(raw);
  const parts: string[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x2b) parts.push("+");
    else if (b === 0x25 && i + 2 < bytes.length && isHex(bytes[i + 1]) && isHex(bytes[i + 2])) {
      parts.push(CANONICAL_BYTE[(hexValue(bytes[i + 1]) << 4) | hexValue(bytes[i + 2])]);
      i += 2;
    } else parts.push(CANONICAL_BYTE[b]);
  }
  return parts.join("");
}

function isHex(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}

function hexValue(b: number): number {
  return b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x61 + 10;
}
