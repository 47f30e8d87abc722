/** @module Canonical form of a request body for OCAP's dedup key: JSON and form field order do not count. */
import { declaresUtf8 } from "../media_type.ts";
import { findRepeatedKey } from "../config_json.ts";
import { occursAtLeast } from "../request_body.ts";
import { canonicalPairs } from "./form_pairs.ts";

/** How a body was keyed; part of the key, so a JSON body never collides with the same raw bytes. */
export type BodyKind = "json" | "form" | "raw";

/** A body in canonical form. */
export interface CanonicalBody {
  kind: BodyKind;
  bytes: Uint8Array;
}

const encoder = new TextEncoder();

/**
 * Canonicalizes a body by its `Content-Type`: JSON is re-serialized with object keys sorted
 * (numbers kept as written, so precision never merges two values), urlencoded forms get their
 * parameters sorted, and everything else, including JSON that does not parse or repeats a key
 * and bodies of more than a thousand elements, stays byte for byte.
 */
export function canonicalBody(contentType: string | null, bytes: Uint8Array): CanonicalBody {
  const type = (contentType ?? "").split(";")[0].trim().toLowerCase();
  // A body in another charset (or a Content-Type read differently by the provider's framework)
  // is keyed on its bytes: decoded as UTF-8, `caf\u00e9` and the bytes of `café` in ISO-8859-1
  // JSON, or `+AOk-` and `%20AOk-` in a UTF-7 form, shared one answer the provider gives two.
  if (!declaresUtf8(contentType ?? "")) return { kind: "raw", bytes };
  if (type === "application/json" || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(type)) {
    const text = decodeStrict(bytes);
    // Beyond MAX_CANONICAL_ELEMENTS, keyed as it is: 524k numbers in 1 MiB cost 0.5–0.7 s.
    if (text !== undefined && !occursAtLeast(text, ",", MAX_CANONICAL_ELEMENTS)) {
      try {
        const parsed = JSON.parse(text, keepNumberSource);
        // JSON.parse keeps the last of a repeated key, other parsers the first: such a body is
        // keyed on its bytes, or {"code":"a","code":"b"} would share {"code":"b"}'s answer. So is
        // one whose keys differ only in letter case: Go's encoding/json and ASP.NET Core match
        // fields so, the later winning, and sorted {"code":"a","Code":"b"} met its reverse.
        if (!findRepeatedKey(text) && !hasCaseVariantKeys(parsed)) {
          return { kind: "json", bytes: encoder.encode(serializeSorted(parsed)) };
        }
      } catch {
        // Claims JSON but is not: keyed on the raw bytes below, without an error.
      }
    }
  }
  if (type === "application/x-www-form-urlencoded") {
    const text = decodeStrict(bytes);
    const pairs = text === undefined ? undefined : canonicalPairs(text);
    if (pairs !== undefined) return { kind: "form", bytes: encoder.encode(pairs) };
  }
  return { kind: "raw", bytes };
}

/**
 * The most JSON elements (counted by their `,` separators, strings' included) canonicalized;
 * beyond, the body is keyed on its bytes: identical requests still share one key, and no token
 * exchange comes near it.
 */
export const MAX_CANONICAL_ELEMENTS = 1000;

/** A JSON number with its source text, so `12345678901234567890` and `…891` stay different. */
class JsonNumber {
  constructor(readonly source: string) {}
}

function keepNumberSource(
  this: unknown,
  _key: string,
  value: unknown,
  context?: { source?: string },
): unknown {
  if (typeof value === "number" && context?.source !== undefined) {
    return new JsonNumber(context.source);
  }
  return value;
}

/**
 * A key as Go's `encoding/json` folds it to match a field: each character lower-cased, then
 * upper-cased, by the simple (one-character) mappings, so `İ` (U+0130) meets `i`, `ſ` meets `s`
 * and the Kelvin sign `K`; JavaScript's full mappings are cut to their first character. A lone
 * surrogate (`"\ud800"`) is U+FFFD first, as Go decodes it: `\ud800` and `\udc00` are one key.
 */
export function foldCase(key: string): string {
  let out = "";
  for (const ch of key.toWellFormed()) {
    const lower = String.fromCodePoint(ch.toLowerCase().codePointAt(0)!);
    const upper = lower.toUpperCase();
    out += upper.length === lower.length ? upper : lower;
  }
  return out;
}

/** Whether an object in `value` has two keys that are one when letter case is folded. */
function hasCaseVariantKeys(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasCaseVariantKeys);
  if (value === null || typeof value !== "object" || value instanceof JsonNumber) return false;
  const keys = Object.keys(value);
  const folded = new Set(keys.map(foldCase));
  return folded.size < keys.length ||
    Object.values(value as Record<string, unknown>).some(hasCaseVariantKeys);
}

/** Serializes without building objects, so keys like `__proto__` are just keys. */
function serializeSorted(value: unknown): string {
  if (value instanceof JsonNumber) return value.source;
  if (Array.isArray(value)) return `[${value.map(serializeSorted).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    const record = value as Record<string, unknown>;
    return `{${keys.map((k) => `${JSON.stringify(k)}:${serializeSorted(record[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * UTF-8 text, or undefined. A byte-order mark is kept as text (`ignoreBOM` means "do not strip
 * it"): the origin sees it as part of the first name, or as JSON that does not parse.
 */
function decodeStrict(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
