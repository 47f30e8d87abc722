/** @module Bounded, jittered retries of Deno KV calls that fail only because the store is busy. */
import { HttpError } from "../http_error.ts";

import { settleBy } from "./settle_by.ts";

/** Attempts per KV call before giving up on a busy store. */
const MAX_ATTEMPTS = 8;

/**
 * How long one KV call may take, its retries included. Deno's KV Connect client retries a failing
 * remote store forever, and the owner must save an answer within its lease's margin (2 s), or
 * another caller could take the lease over and call the origin again.
 */
export const KV_CALL_LIMIT_MS = 2_000;

/**
 * SQLite-backed KV shared by several processes (or `deno serve --parallel` workers) throws
 * `database is locked` under write contention; such calls are retried with jittered backoff
 * (5–80 ms). Any other failure, a store still busy after the retries, or no answer within
 * `limitMs` becomes 503 `ocap_store_unavailable`: OCAP refuses to answer rather than lose its
 * dedup guarantee.
 */
export async function withKvRetry<T>(
  operation: () => Promise<T>,
  limitMs = KV_CALL_LIMIT_MS,
): Promise<T> {
  const until = performance.now() + limitMs;
  const late = () => new Error(`The store did not answer within ${limitMs} ms`);
  for (let attempt = 1;; attempt++) {
    try {
      return await settleBy(operation(), until - performance.now(), late);
    } catch (error) {
      if (isBusy(error) && attempt < MAX_ATTEMPTS && performance.now() < until) {
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
