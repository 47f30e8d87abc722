/** @module Byte-exact canonical form of urlencoded pairs (bodies and queries) for OCAP's dedup key. */

const encoder = new TextEncoder();
const KEEP = /[A-Za-z0-9*._-]/;

/**
 * Parses `a=1&b=2` like `URLSearchParams` (split on `&`, first `=`, `+` is a space) but keeps the
 * decoded bytes: `%FF` and `%FE` are not both U+FFFD. Returns the pairs re-encoded canonically
 * and sorted by name, joined with `&`; `undefined` for text that parsers read differently, which
 * must be keyed as it is: a `;` (Go's `ParseQuery` refuses it, others split on it or keep it) or
 * a `%` that starts no escape (Go and Java refuse it, `URLSearchParams` keeps it), so that
 * `code=ab%GG` cannot share `code=ab%25GG`'s answer.
 */
export function canonicalPairs(text: string): string | undefined {
  if (text.includes(";") || /%(?![0-9A-Fa-f]{2})/.test(text)) return undefined;
  const pairs: string[][] = [];
  for (const part of text.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? "" : part.slice(eq + 1);
    pairs.push([canonicalComponent(name), canonicalComponent(value)]);
  }
  // By name only: the sort is stable, so a repeated name keeps the order of its values, which
  // servers read (the first wins in Go and URLSearchParams, the last in Django and PHP).
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return pairs.map(([n, v]) => `${n}=${v}`).join("&");
}

function canonicalComponent(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === "+") bytes.push(0x20);
    else if (c === "%" && /^[0-9a-f]{2}$/i.test(raw.slice(i + 1, i + 3))) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      const cp = raw.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      bytes.push(...encoder.encode(ch));
      i += ch.length - 1;
    }
  }
  let out = "";
  for (const b of bytes) {
    const ch = String.fromCharCode(b);
    out += b === 0x20
      ? "+"
      : b < 0x80 && KEEP.test(ch)
      ? ch
      : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
