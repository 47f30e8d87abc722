/** @module A promise raced against a clock, without leaving the timer or a rejection behind. */

/** The longest delay `setTimeout` keeps (2^31 − 1 ms, 24.8 days): a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `ms` as a `setTimeout` delay that means it: a lease deadline a margin past the largest
 * `timeout_ms` the rules file takes overflowed, and every waiter got an instant 504.
 */
export function timerDelay(ms: number): number {
  return Math.min(Math.max(0, ms), MAX_TIMER_MS);
}

/**
 * `promise`'s outcome if it settles within `ms`, else a rejection with `late()`. The promise
 * itself runs on (nothing here can stop it); its eventual rejection is swallowed.
 */
export async function settleBy<T>(promise: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const clock = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), timerDelay(ms));
  });
  try {
    return await Promise.race([promise, clock]);
  } finally {
    clearTimeout(timer);
    promise.catch(() => {});
  }
}
