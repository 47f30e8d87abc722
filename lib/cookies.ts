/** @module Filters a `Cookie` request header by cookie name without re-encoding what it keeps. */
import { TCHAR } from "./header_list.ts";

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
  /**
   * Names no reading of the header may leave (the pin): a pair with bytes above 0x7F is read as
   * ASP.NET Core reads it only for these, as Kestrel can be told to accept such bytes (Latin-1
   * or UTF-8 headers, HTTP.sys), while the allow-list of a UTF-8 name must not drop it.
   */
  never?: (name: string) => boolean,
): string | undefined {
  if (!header) return undefined;
  const kept: string[] = [];
  for (const piece of header.split(";")) {
    const eq = piece.indexOf("=");
    if (eq === -1) continue;
    const name = cookieName(piece.slice(0, eq));
    const pair = piece.trim();
    if (!name || !keep(name)) continue;
    // A pair with bytes above 0x7F (a UTF-8 name such as préférence) is read for `never` alone:
    // ASP.NET Core reads `préférence=fr` as a cookie `rence`, which an allow-list would refuse.
    if (!RFC6265_PAIR.test(pair)) {
      const kept = ASCII.test(pair) ? keep : never && ((name: string) => !never(name));
      if (kept && !aspNetPairsKept(pair, kept)) continue;
    }
    if (!INNER_SEPARATOR.test(pair) || innerPairsKept(pair, keep)) kept.push(pair);
  }
  return kept.length > 0 ? kept.join("; ") : undefined;
}

/** A cookie-octet (RFC 6265 §4.1.1): printable ASCII but `"`, `,`, `;` and `\`. */
const COOKIE_OCTET = "[\\x21\\x23-\\x2b\\x2d-\\x3a\\x3c-\\x5b\\x5d-\\x7e]";

/** RFC 6265's `token=cookie-octets`, the octets bare or quoted: ASP.NET Core reads it whole. */
const RFC6265_PAIR = new RegExp(`^${TCHAR}+=(?:${COOKIE_OCTET}*|"${COOKIE_OCTET}*")$`);

const TOKEN_CHAR = new RegExp(TCHAR);

const ASCII = /^[^\x80-\uffff]*$/;

/** {@linkcode COOKIE_OCTET}, by character code, for the scan's one pass. */
function isCookieOctet(c: number): boolean {
  return c >= 0x21 && c <= 0x7e && c !== 0x22 && c !== 0x2c && c !== 0x3b && c !== 0x5c;
}

/**
 * Whether every cookie ASP.NET Core finds in `pair` passes `keep`. Its CookieHeaderParserShared
 * reads a pair it cannot parse again from the next character: `a/__Host-vestibule-region=au`
 * and `x=a\__Host-vestibule-region=au` (ASCII a sibling subdomain may set) are the pin to it,
 * looked up in any letter case. Linear: a name that fails, fails from each of its characters.
 */
function aspNetPairsKept(pair: string, keep: (name: string) => boolean): boolean {
  const n = pair.length;
  // Where the run of cookie-octets starting at each index ends.
  const octetsEnd = new Int32Array(n + 2).fill(n);
  for (let i = n - 1; i >= 0; i--) {
    octetsEnd[i] = isCookieOctet(pair.charCodeAt(i)) ? octetsEnd[i + 1] : i;
  }
  for (let i = 0; i < n;) {
    let end = i;
    while (end < n && TOKEN_CHAR.test(pair[end])) end++;
    if (end === i) {
      i++;
      continue;
    }
    if (pair[end] !== "=") {
      i = end;
      continue;
    }
    let k = end + 1;
    if (pair[k] === '"') {
      k = octetsEnd[k + 1];
      if (pair[k] === '"') k++;
    } else k = octetsEnd[k];
    while (pair[k] === " " || pair[k] === "\t") k++;
    // Parsed only if the value ends the pair, or a comma does (ASP.NET splits on both).
    if (k < n && pair[k] !== ",") {
      i = end;
      continue;
    }
    if (!keep(cookieName(pair.slice(i, end)))) return false;
    i = k + 1;
  }
  return true;
}

/**
 * What some servers also end a pair with: a comma (RFC 2109, Rack), a space (Python); and the
 * quote with which Python reads a value across `;`.
 */
const INNER_SEPARATOR = /[,\t\n\v\f\r "]/;

/**
 * Whether every name that another server would find inside `pair` passes `keep` too. Rack and
 * Java's legacy cookie processor also split on commas (`csrftoken=c, __Host-vestibule-region=au`,
 * `junk, __Host-vestibule-region=au`); Python's SimpleCookie (Bottle, aiohttp) ends a pair at a
 * space and allows spaces around `=` (`csrftoken=abc== __Host-vestibule-region = au`).
 */
function innerPairsKept(pair: string, keep: (name: string) => boolean): boolean {
  for (const part of pair.split(",")) {
    const at = part.indexOf("=");
    if (at > 0 && !keep(cookieName(part.slice(0, at)))) return false;
  }
  return spacedPairsKept(pair, keep);
}

/**
 * The space-separated reading, in one pass: a name, optional spaces, `=`, optional spaces, then a
 * value that runs to the next space, or a double-quoted one (which may hold spaces) to its
 * closing quote, as SimpleCookie reads them. A quote the pair does not close fails it: Python
 * reads such a value on across `;` (`a="x; b=" __Host-vestibule-region=au`). A `"` inside a bare
 * value (`ab"c`) opens nothing.
 */
function spacedPairsKept(pair: string, keep: (name: string) => boolean): boolean {
  const n = pair.length;
  let i = 0;
  while (i < n) {
    while (i < n && isBlank(pair.charCodeAt(i))) i++;
    const start = i;
    while (i < n && !isBlank(pair.charCodeAt(i)) && pair[i] !== "=") i++;
    let at = i;
    while (at < n && isBlank(pair.charCodeAt(at))) at++;
    if (pair[at] !== "=") {
      i = Math.max(at, start + 1); // a word without a value: move on
      continue;
    }
    if (at > start && !keep(cookieName(pair.slice(start, i)))) return false;
    i = at + 1;
    while (i < n && isBlank(pair.charCodeAt(i))) i++;
    if (pair[i] === '"') {
      for (i++; i < n && pair[i] !== '"'; i++) if (pair[i] === "\\") i++;
      if (i >= n) return false;
      i++;
    } else {
      while (i < n && !isBlank(pair.charCodeAt(i))) i++;
    }
  }
  return true;
}

/** ASCII whitespace, which Python's `\s` in an ASCII pattern matches (not U+00A0 or NEL). */
function isBlank(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d);
}

/**
 * The value of the first pair named `name` (trimmed, surrounding quotes removed), or `undefined`.
 * Pairs are split exactly as {@linkcode filterCookieHeader} splits them, so a pin cookie that is
 * read here is one that filtering strips. Scans in place: reading the pin on every request by a
 * full cookie parse cost about 0.8 µs with a browser's cookies.
 */
export function cookieValue(header: string | null, name: string): string | undefined {
  if (!header || !header.includes(name)) return undefined;
  // The next `=` is found once and kept until a pair passes it: searching the rest of a 64 KB
  // header of `;` pieces from every piece was quadratic, 15 ms of blocked event loop a request.
  let eq = -1;
  for (let start = 0; start <= header.length;) {
    let end = header.indexOf(";", start);
    if (end === -1) end = header.length;
    if (eq < start) {
      eq = header.indexOf("=", start);
      if (eq === -1) return undefined; // no pair with a value is left
    }
    if (eq < end && browserTrim(header.slice(start, eq)) === name) {
      const value = browserTrim(header.slice(eq + 1, end));
      return value.length >= 2 && value.startsWith('"') && value.endsWith('"')
        ? value.slice(1, -1)
        : value;
    }
    start = end + 1;
  }
  return undefined;
}

/**
 * A cookie name or value as browsers store it: only SP and HTAB trimmed (RFC 6265bis §5.7), so the
 * `__Host-` rules held for a name read so. What lenient servers also trim ({@linkcode cookieName})
 * is stripped but never read as the pin: `\u00a0__Host-vestibule-region` is any subdomain's to set.
 * A value's last octet A0 is part of it (`à` is C3 A0), where `trim()` took it for a space.
 */
export function browserTrim(raw: string): string {
  let start = 0;
  let end = raw.length;
  while (start < end && (raw[start] === " " || raw[start] === "\t")) start++;
  while (end > start && (raw[end - 1] === " " || raw[end - 1] === "\t")) end--;
  return start === 0 && end === raw.length ? raw : raw.slice(start, end);
}

/**
 * A cookie name as the most lenient server reads it: `trim()` plus what Python's `strip()` also
 * removes (U+001C–U+001F, U+0085, and Unicode spaces sent as UTF-8: {@linkcode UTF8_SPACES}), or
 * `\x85__Host-vestibule-region` would pass the filter as another name and reach Django as the
 * pin. Index loops, not a regex: `[…]+$` backtracked over every run of spaces in a 60 KB header.
 */
export function cookieName(raw: string): string {
  let start = 0;
  let end = raw.length;
  for (let n = 0; start < end; start += n) {
    n = utf8SpaceLength(raw, start, end) || (isNameSpace(raw.charCodeAt(start)) ? 1 : 0);
    if (n === 0) break;
  }
  for (let n = 0; end > start; end -= n) {
    // The whole UTF-8 sequence first: its last octet (85, A0) is a Latin-1 space of its own.
    n = utf8SpaceLengthBefore(raw, start, end) ||
      (isNameSpace(raw.charCodeAt(end - 1)) && !endsUtf8Char(raw, start, end) ? 1 : 0);
    if (n === 0) break;
  }
  return start === 0 && end === raw.length ? raw : raw.slice(start, end);
}

/**
 * What Python's `strip()` also removes beyond Latin-1, as the octets a client sends in UTF-8
 * (one character each here): WSGI Django decodes `HTTP_COOKIE` as UTF-8 before `parse_cookie`
 * strips names, so `\xC2\xA0__Host-vestibule-region` is the pin to it. NEL and no-break space
 * (C2 85, C2 A0), U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F and U+3000.
 */
const UTF8_SPACES = [
  "\xC2\x85",
  "\xC2\xA0",
  "\xE1\x9A\x80",
  ..."\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8A\xA8\xA9\xAF".split("").map((c) =>
    `\xE2\x80${c}`
  ),
  "\xE2\x81\x9F",
  "\xE3\x80\x80",
];

/** The length of the {@linkcode UTF8_SPACES} entry at `at` in `raw` (before `end`), or 0. */
function utf8SpaceLength(raw: string, at: number, end: number): number {
  const lead = raw.charCodeAt(at);
  if (lead < 0xc2 || lead > 0xe3) return 0; // the usual case: no space starts here
  for (const space of UTF8_SPACES) {
    if (at + space.length <= end && raw.startsWith(space, at)) return space.length;
  }
  return 0;
}

/** The length of the {@linkcode UTF8_SPACES} entry ending at `end` (not before `start`), or 0. */
function utf8SpaceLengthBefore(raw: string, start: number, end: number): number {
  const last = raw.charCodeAt(end - 1);
  if (last < 0x80 || last > 0xbf) return 0;
  for (const space of UTF8_SPACES) {
    if (end - space.length >= start && raw.startsWith(space, end - space.length)) {
      return space.length;
    }
  }
  return 0;
}

/**
 * Whether the 85 or A0 octet before `end` ends a UTF-8 character that is no space (`à` is C3 A0):
 * trimmed, `voilÅ` (C3 85) read as `voilà`. The name left ends in a non-ASCII octet either way,
 * so no such octet stands between a name and the (ASCII) pin.
 */
function endsUtf8Char(raw: string, start: number, end: number): boolean {
  for (let i = end - 2, n = 2; i >= start && n <= 4; i--, n++) {
    const c = raw.charCodeAt(i);
    if (c >= 0x80 && c <= 0xbf) continue;
    return n === 2
      ? c >= 0xc2 && c <= 0xdf
      : n === 3
      ? c >= 0xe0 && c <= 0xef
      : c >= 0xf0 && c <= 0xf4;
  }
  return false;
}

/**
 * What JavaScript's `trim()` or Python's `strip()` removes, among the Latin-1 characters a header
 * value can hold.
 */
function isNameSpace(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d) || (code >= 0x1c && code <= 0x1f) ||
    code === 0x85 || code === 0xa0;
}
