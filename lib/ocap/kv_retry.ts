/** @module Bounded, jittered retries of Deno KV calls that fail only because the store is busy. */
import { HttpError } from "../http_error.ts";

/** Attempts per KV call before giving up on a busy store. */
const MAX_ATTEMPTS = 8;

/**
 * SQLite-backed KV shared by several processes (or `deno serve --parallel` workers) throws
 * `database is locked` under write contention; such calls are retried with jittered backoff
 * (5–80 ms). Any other failure, or a store still busy after the retries, becomes
 * 503 `ocap_store_unavailable`: OCAP refuses to answer rather than lose its dedup guarantee.
 */
export async function withKvRetry<T>(operation: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (isBusy(error) && attempt < MAX_ATTEMPTS) {
        const base = Math.min(80, 5 * 2 ** (attempt - 1));
        await new Promise((resolve) => setTimeout(resolve, base / 2 + Math.random() * base / 2));
        continue;
      }
      throw new HttpError(
        503,
        "ocap_store_unavailable",
        "The OCAP store is unavailable: refusing to call the origin without the dedup guarantee",
        { cause: error },
      );
    }
  }
}

function isBusy(error: unknown): boolean {
  return error instanceof Error && /database is (locked|busy)|SQLITE_BUSY/i.test(error.message);
}
