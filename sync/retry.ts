/** @module Retry with backoff for the failures a second try can fix. */

/**
 * SQLSTATEs worth retrying: serialization failure, deadlock, server shutting down or restarting,
 * and the connection exception class.
 * https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
const TRANSIENT_SQLSTATES = new Set([
  "40001",
  "40P01",
  "57P01",
  "57P02",
  "57P03",
  "08000",
  "08001",
  "08003",
  "08004",
  "08006",
]);

/** npm:postgres and socket error codes for a lost or refused connection (not our own shutdown). */
const TRANSIENT_CLIENT_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
]);

/** Whether `error` is a serialization failure, deadlock or lost connection. */
export function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" &&
    (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_CLIENT_CODES.has(code));
}

/** Options for {@linkcode withRetry}. */
export interface RetryOptions {
  /** Tries in all, the first included. */
  attempts?: number;
  /** Delay before the second try; doubles after each, with jitter. */
  baseDelayMs?: number;
  /** Injected for tests; the default ends early when `signal` fires. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Called before each retry. */
  onRetry?: (error: unknown, attempt: number) => void;
  /**
   * A stop: no retry once it fires, and a backoff under way ends at once. Probing a destination
   * that never answers went on through every try (about 40 s) after a SIGTERM, past Kubernetes'
   * 30 s grace period.
   */
  signal?: AbortSignal;
}

/** How many tries each error {@linkcode withRetry} gave up on had; see {@linkcode attemptsOf}. */
const triesOf = new WeakMap<object, number>();

/** The tries {@linkcode withRetry} made before it threw `error` (0 when it did not throw it). */
export function attemptsOf(error: unknown): number {
  return (typeof error === "object" && error !== null && triesOf.get(error)) || 0;
}

/** Run `fn`, retrying transient failures with exponential backoff; other errors pass through. */
export async function withRetry<T>(
  fn: () => Promise<T>,
  options: RetryOptions = {},
): Promise<{ value: T; attempts: number }> {
  const attempts = options.attempts ?? 4;
  const base = options.baseDelayMs ?? 250;
  const sleep = options.sleep ?? stoppableSleep;
  for (let attempt = 1;; attempt++) {
    try {
      return { value: await fn(), attempts: attempt };
    } catch (error) {
      const again = attempt < attempts && isTransient(error) && !options.signal?.aborted;
      if (again) {
        options.onRetry?.(error, attempt);
        await sleep(base * 2 ** (attempt - 1) * (0.5 + Math.random()), options.signal);
      }
      // A stop during the wait gives up too, with this try's error.
      if (!again || options.signal?.aborted) {
        if (typeof error === "object" && error !== null) triesOf.set(error, attempt);
        throw error;
      }
    }
  }
}

/** Waits `ms`, or until `signal` fires, leaving no timer or listener behind. */
function stoppableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
