/** @module Parses IPv4 and IPv6 text forms without allocating, for the IP → country lookup. */

// "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" is the longest text form.
export const MAX_ADDRESS_LENGTH = 45;
const COLON = 58;
const DOT = 46;
export const DIGIT_0 = 48;

/** Dotted-quad in `text[from, to)`, or -1. Leading zeros are refused: some parsers read them as octal. */
export function parseIpv4(text: string, from: number, to: number): number {
  let address = 0;
  let parts = 0;
  let i = from;
  while (parts < 4) {
    const partStart = i;
    let value = 0;
    while (i < to && i - partStart < 3) {
      const digit = text.charCodeAt(i) - DIGIT_0;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit;
      i++;
    }
    const length = i - partStart;
    if (length === 0 || value > 255 || (length > 1 && text.charCodeAt(partStart) === DIGIT_0)) {
      return -1;
    }
    address = address * 256 + value;
    parts++;
    if (parts < 4) {
      if (i >= to || text.charCodeAt(i) !== DOT) return -1;
      i++;
    }
  }
  return i === to ? address : -1;
}

const GROUPS = new Uint16Array(8);

/** RFC 4291 §2.2 text forms (with `::` and a dotted-quad tail) into four big-endian words. */
export function parseIpv6(text: string, words: Uint32Array): boolean {
  const length = text.length;
  let count = 0;
  let gap = -1;
  let i = 0;
  if (text.charCodeAt(0) === COLON) {
    if (text.charCodeAt(1) !== COLON) return false;
    gap = 0;
    i = 2;
  }
  while (i < length) {
    if (count === 8) return false;
    let value = 0;
    let j = i;
    while (j < length && j - i < 5) {
      const digit = hexDigit(text.charCodeAt(j));
      if (digit < 0) break;
      value = value * 16 + digit;
      j++;
    }
    if (j === i || j - i > 4) return false;
    if (j < length && text.charCodeAt(j) === DOT) {
      const address = count <= 6 ? parseIpv4(text, i, length) : -1;
      if (address < 0) return false;
      GROUPS[count++] = address >>> 16;
      GROUPS[count++] = address & 0xffff;
      break;
    }
    GROUPS[count++] = value;
    if (j === length) break;
    if (text.charCodeAt(j) !== COLON) return false;
    j++;
    if (j < length && text.charCodeAt(j) === COLON) {
      if (gap >= 0) return false;
      gap = count;
      j++;
    } else if (j === length) {
      return false;
    }
    i = j;
  }
  if (gap < 0 ? count !== 8 : count > 7) return false;
  if (gap >= 0) {
    const tail = count - gap;
    GROUPS.copyWithin(8 - tail, gap, count);
    GROUPS.fill(0, gap, 8 - tail);
  }
  for (let word = 0; word < 4; word++) {
    words[word] = ((GROUPS[word * 2] << 16) | GROUPS[word * 2 + 1]) >>> 0;
  }
  return true;
}

function hexDigit(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  const lower = code | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}
