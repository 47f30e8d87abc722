/** @module How long a stop waits for answers in flight: `VESTIBULE_SHUTDOWN_GRACE_MS`. */

/**
 * The default: below Kubernetes' default 30 s `terminationGracePeriodSeconds`, after which the
 * process is killed anyway, so the access lines still buffered are written first.
 */
export const DEFAULT_SHUTDOWN_GRACE_MS = 25_000;

/** The longest `setTimeout` waits; a longer delay fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `VESTIBULE_SHUTDOWN_GRACE_MS` (default {@linkcode DEFAULT_SHUTDOWN_GRACE_MS}) in milliseconds, or
 * a message naming the value as the operator wrote it. An orchestrator with a longer or shorter
 * grace period than Kubernetes' default wants this a little below its own.
 */
export function shutdownGraceMs(raw?: string): number | { error: string } {
  if (raw === undefined) return DEFAULT_SHUTDOWN_GRACE_MS;
  const ms = Number(raw);
  if (!/^\d{1,10}$/.test(raw) || ms > MAX_TIMER_MS) {
    return {
      error: `VESTIBULE_SHUTDOWN_GRACE_MS "${raw}" is not a number of milliseconds ` +
        `(0–${MAX_TIMER_MS}; default ${DEFAULT_SHUTDOWN_GRACE_MS})`,
    };
  }
  return ms;
}
