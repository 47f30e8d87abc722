/** @module Media type parameters (`Content-Type: multipart/form-data; boundary=…`), read as the frameworks read them. */

/**
 * The first parameter `name` of a media type (RFC 9110 §5.6.6), as {@linkcode mediaTypeParameters}
 * reads them.
 */
export function mediaTypeParameter(mediaType: string, name: string): string | undefined {
  for (const [key, value] of mediaTypeParameters(mediaType)) if (key === name) return value;
  return undefined;
}

/**
 * The parameters of a media type in order, names lower-cased, read pair by pair, each value a
 * token or a quoted string: `x="; charset=utf-16le"` is x's value, not a charset, and a quote
 * left open runs to the end. A segment without `=` is skipped, as Python's `email` skips it.
 */
export function* mediaTypeParameters(mediaType: string): Generator<[string, string]> {
  let at = mediaType.indexOf(";");
  while (at >= 0 && at < mediaType.length) {
    // Each scan stops at the next `;`: searching the rest of a 64 KB `;;;…` for `=` from every
    // `;` would be quadratic.
    const next = mediaType.indexOf(";", at + 1);
    const within = mediaType.slice(at + 1, next < 0 ? undefined : next).indexOf("=");
    if (within < 0) { // `; x;`: no value
      at = next;
      continue;
    }
    const eq = at + 1 + within;
    const key = mediaType.slice(at + 1, eq).trim().toLowerCase();
    let i = eq + 1;
    while (mediaType[i] === " " || mediaType[i] === "\t") i++;
    let value = "";
    if (mediaType[i] === '"') {
      for (i++; i < mediaType.length && mediaType[i] !== '"'; i++) {
        if (mediaType[i] === "\\") i++;
        value += mediaType[i] ?? "";
      }
      at = mediaType.indexOf(";", i);
    } else {
      const end = mediaType.indexOf(";", i);
      value = mediaType.slice(i, end < 0 ? undefined : end).trim();
      at = end;
    }
    yield [key, value];
  }
}

/** RFC 9110 §5.6.2 token characters. */
const TCHAR = "[!#$%&'*+.^_`|~0-9A-Za-z-]";

/**
 * A media type whose parameters every reader splits alike: each `; name=value` a token or a
 * quoted string without backslashes, no trailing space. Django's `_parseparam` splits by counting
 * quotes, busboy drops spaces inside a value, PHP cuts one at `,` and keeps a trailing space.
 */
const PLAIN_PARAMETERS = new RegExp(
  `^[^;"]*(?:;[ \\t]*${TCHAR}+=(?:${TCHAR}+|"[^"\\\\]*"))*;?$`,
);

/**
 * The parameters of a media type written so plainly that Django, busboy and PHP all read them as
 * this does (see {@linkcode PLAIN_PARAMETERS}), no name twice (Django keeps the last, this the
 * first) and none in RFC 2231's `name*=` form (Django reads `charset*` as `charset`); else
 * `undefined`. Names lower-cased.
 */
export function plainParameters(mediaType: string): Map<string, string> | undefined {
  if (!PLAIN_PARAMETERS.test(mediaType)) return undefined;
  const parameters = new Map<string, string>();
  for (const [key, value] of mediaTypeParameters(mediaType)) {
    if (key.endsWith("*") || parameters.has(key)) return undefined;
    parameters.set(key, value);
  }
  return parameters;
}

/**
 * Whether every framework reads a body of this `Content-Type` as UTF-8: its parameters are plain
 * ({@linkcode plainParameters}) and name no charset, or UTF-8. Django decodes form fields in the
 * charset the header names (`utf-7` included), Django REST framework its JSON too: read as UTF-8,
 * such a body could match a field or key the app reads differently, so it matches no `json` or
 * `form` matcher.
 */
export function declaresUtf8(contentType: string): boolean {
  const parameters = plainParameters(contentType);
  const charset = parameters?.get("charset");
  return parameters !== undefined && (charset === undefined || /^utf-?8$/i.test(charset));
}
