/** @module Constant-time check of the `Ocap-Key` header. */
import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Whether `given` equals `expected`, in time that does not depend on where they differ: both
 * are hashed to 32 bytes first, so even their lengths are not compared directly.
 */
export function ocapKeyMatches(given: string | null, expected: string): boolean {
  if (given === null) return false;
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}
