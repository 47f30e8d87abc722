/**
 * @module The bytes a client sends for a body typed as text, in the charset its `Content-Type`
 * declares: explain and route-table cases are written as text, but the router matches the bytes,
 * decoding them as `decoderFor` (request_body.ts) does, or reading no text where it reads none.
 */
import { charsetDecoder, MULTI_BYTE_ENCODINGS } from "./request_body.ts";

/**
 * Encodes `text` as a client would under `contentType`'s charset (UTF-8 when it names none, or
 * one the router does not know: its `regex` matchers then match nothing, whatever the bytes).
 *
 * @throws {TypeError} for a character the charset cannot hold, or a multi-byte charset other than
 * UTF-8 and UTF-16 (which `TextEncoder` cannot write)
 */
export function encodeBodyText(text: string, contentType: string | null): Uint8Array<ArrayBuffer> {
  const decoder = charsetDecoder(contentType) ?? new TextDecoder();
  const { encoding } = decoder;
  if (encoding === "utf-8") return new TextEncoder().encode(text);
  if (encoding === "utf-16le" || encoding === "utf-16be") {
    const bytes = new Uint8Array(text.length * 2);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < text.length; i++) {
      view.setUint16(i * 2, text.charCodeAt(i), encoding === "utf-16le");
    }
    return bytes;
  }
  if (MULTI_BYTE_ENCODINGS.has(encoding)) {
    throw new TypeError(
      `Cannot write a body in charset ${encoding}: only UTF-8, UTF-16 and single-byte charsets`,
    );
  }
  // A single-byte charset: each byte decodes to one character; invert that table.
  const table = new Map<string, number>();
  for (let byte = 255; byte >= 0; byte--) {
    const char = decoder.decode(Uint8Array.of(byte));
    if (char !== "\uFFFD") table.set(char, byte);
  }
  const chars = [...text];
  const bytes = new Uint8Array(chars.length);
  for (const [i, char] of chars.entries()) {
    const byte = table.get(char);
    if (byte === undefined) {
      const code = char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
      throw new TypeError(`Cannot write U+${code} in a body of charset ${encoding}`);
    }
    bytes[i] = byte;
  }
  return bytes;
}
