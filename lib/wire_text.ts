/**
 * @module Text as the wire carries it. `Deno.serve` and `fetch` hand header values over one
 * character per octet received, so `é`, which clients and origins send in UTF-8, reads "Ã©";
 * what the rules file names in a header must be compared in that form.
 */

const NON_ASCII = /[\u0080-\uffff]/;

/** Whether `text` has a character beyond ASCII. */
export function hasNonAscii(text: string): boolean {
  return NON_ASCII.test(text);
}

/** `text` as a header holds it once sent in UTF-8: one character per octet; ASCII as it is. */
export function asSentInUtf8(text: string): string {
  if (!NON_ASCII.test(text)) return text;
  let octets = "";
  for (const octet of new TextEncoder().encode(text)) octets += String.fromCharCode(octet);
  return octets;
}

const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true });

/** The other way: header octets shown as the UTF-8 text they were typed as; as they are if not UTF-8. */
export function asTypedText(octets: string): string {
  if (!/[\u0080-\u00ff]/.test(octets)) return octets;
  try {
    return UTF8_STRICT.decode(Uint8Array.from(octets, (char) => char.charCodeAt(0)));
  } catch {
    return octets;
  }
}
