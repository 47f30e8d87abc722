/** @module A promise raced against a clock, without leaving the timer or a rejection behind. */

/**
 * `promise`'s outcome if it settles within `ms`, else a rejection with `late()`. The promise
 * itself runs on (nothing here can stop it); its eventual rejection is swallowed.
 */
export async function settleBy<T>(promise: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const clock = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise, clock]);
  } finally {
    clearTimeout(timer);
    promise.catch(() => {});
  }
}
