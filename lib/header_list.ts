/** @module A request's headers, read once per request into a plain list. */

/**
 * Header name/value pairs as `fetch` takes them. A plain list spares building a `Headers`
 * object (which validates every name and value) only for `fetch` to copy it into a sorted list
 * again; in CPU profiles under load this was the largest single cost vestibule added.
 */
export type HeaderPairs = Array<[name: string, value: string]>;

/** RFC 9110 §5.6.2 token characters, for building patterns. */
export const TCHAR = "[!#$%&'*+.^_`|~0-9A-Za-z-]";

/** RFC 9110 §5.6.2 token: a header name, a cookie name, a WebSocket subprotocol. */
export const HTTP_TOKEN = new RegExp(`^${TCHAR}+$`);

/**
 * A field value trimmed as HTTP trims it, of SP and HTAB only (RFC 9110 §5.6.3): `trim()` also
 * takes an A0 octet, VT and FF, which the router and `Deno.serve` keep as part of the value.
 */
export function trimOws(value: string): string {
  return value.replace(/^[ \t]+|[ \t]+$/g, "");
}

/** What the router needs from a set of request headers: `Headers` and `HeaderList` both fit. */
export interface HeaderReader {
  get(name: string): string | null;
  forEach(fn: (value: string, name: string) => void): void;
}

/**
 * The headers of one request as name/value pairs: lower-case names, a repeated header joined
 * the way `Headers.get` joins it. Each `Headers.get` on a `Deno.serve` request costs about
 * 0.15 µs and the router asked for nine; reading the list once and scanning it is cheaper, and
 * forwarding needs the whole list anyway.
 */
export class HeaderList implements HeaderReader {
  readonly pairs: HeaderPairs = [];

  constructor(headers: Headers) {
    // forEach, not for…of: Deno's Headers iterator cost about 20 % more for a browser's headers.
    headers.forEach((value, name) => void this.pairs.push([name, value]));
  }

  /** Like `Headers.get`; `name` must be lower-case (the rules compiler lower-cases them). */
  get(name: string): string | null {
    for (const [n, value] of this.pairs) if (n === name) return value;
    return null;
  }

  /** Like `Headers.forEach`: each header once, lower-case name, repeated values joined. */
  forEach(fn: (value: string, name: string) => void): void {
    for (const [name, value] of this.pairs) fn(value, name);
  }
}
