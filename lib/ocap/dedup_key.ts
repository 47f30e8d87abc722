/** @module The key under which identical OCAP requests share one origin call and one cached answer. */
import { canonicalBody } from "./canonical_body.ts";
import { normalizeUrl } from "./normalize_url.ts";

/** What identifies an outgoing request; other headers do not count. */
export interface DedupInput {
  method: string;
  /** The absolute target URL OCAP will call. */
  url: string | URL;
  contentType: string | null;
  body: Uint8Array;
  /** The `Authorization` header value, or null. */
  authorization: string | null;
  /**
   * The caller's conditional and range headers ({@linkcode SELECTING_HEADERS}), which decide
   * whether the answer is the resource, a 304, a 412 or a part of it.
   */
  headers?: Headers;
}

/** RFC 9110 §13.1 preconditions and §14.2 `Range` (with §13.1.5 `If-Range`). */
const SELECTING_HEADERS = [
  "if-match",
  "if-none-match",
  "if-modified-since",
  "if-unmodified-since",
  "if-range",
  "range",
] as const;

const encoder = new TextEncoder();

/**
 * SHA-256 (hex) over the method, the normalized URL, the canonical body (with the Content-Type
 * when the body is keyed as it is) and `Authorization`, each part length-prefixed so no two
 * different inputs share an encoding.
 */
export async function dedupKey(input: DedupInput): Promise<string> {
  const body = canonicalBody(input.contentType, input.body);
  const parts = [
    encoder.encode(input.method.toUpperCase()),
    encoder.encode(normalizeUrl(input.url)),
    encoder.encode(body.kind),
    body.bytes,
    // Bytes keyed as they are mean what the Content-Type says they mean: `code=+AOk-` is é to
    // Django under charset=utf-7 and " AOk-" under iso-8859-1, two codes. (Canonical JSON and
    // forms are UTF-8 whatever the header's spelling.)
    body.kind === "raw" ? encoder.encode(input.contentType ?? "") : new Uint8Array(),
    input.authorization === null ? new Uint8Array() : encoder.encode(`=${input.authorization}`),
  ];
  // Only when one is present, so every other request keeps the key it had (instances of two
  // versions side by side still share calls).
  const selecting = SELECTING_HEADERS.flatMap((name) => {
    const value = input.headers?.get(name);
    return value === null || value === undefined ? [] : [`${name}:${value}`];
  });
  if (selecting.length > 0) parts.push(encoder.encode(selecting.join("\n")));
  let total = 0;
  for (const part of parts) total += 4 + part.byteLength;
  const buffer = new Uint8Array(total);
  const view = new DataView(buffer.buffer);
  let offset = 0;
  for (const part of parts) {
    view.setUint32(offset, part.byteLength);
    buffer.set(part, offset + 4);
    offset += 4 + part.byteLength;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
