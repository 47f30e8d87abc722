/** @module Media type parameters (`Content-Type: multipart/form-data; boundary=…`), read as the frameworks read them. */
import { TCHAR } from "./header_list.ts";

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

/** How apps may read a request body: which of the three parameter readings apply, if any. */
export interface BodyReadings {
  /** The media type as Rack and PHP cut it, lower-cased. */
  media: string;
  /** A urlencoded form (to some app). */
  form: boolean;
  multipart: boolean;
  json: boolean;
}

/**
 * Which readings apps give a body of Content-Type `type` (null: none sent), or `undefined` when
 * one app reads it as a form and another as JSON (`…-urlencoded; x=a+json`): either could be the
 * app's. The media type is cut at `;` or `,`, whitespace trimmed (PHP also cuts at a space, Rack
 * keeps a tab before the `;`). A form: the urlencoded type, any type starting so (Symfony parses a
 * PUT, PATCH or DELETE so), or a POST without a type (Rack). JSON: Laravel's `isJson()`, any `/json`
 * or `+json` in the header (`text/plain;a=/json`, which a cross-site fetch may send), and Rails'
 * text/x-json and application/jsonrequest.
 */
export function bodyReadings(type: string | null, method: string): BodyReadings | undefined {
  const lower = (type ?? "").toLowerCase();
  const media = lower.split(/[;,\s]/)[0];
  const form = media === URLENCODED || lower.startsWith(URLENCODED) ||
    (type === null && method === "POST");
  const multipart = media.startsWith("multipart/");
  const json = /\/json|\+json/.test(lower) || media === "text/x-json" ||
    media === "application/jsonrequest";
  if (Number(form) + Number(multipart) + Number(json) > 1) return undefined;
  return { media, form, multipart, json };
}

const URLENCODED = "application/x-www-form-urlencoded";

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
