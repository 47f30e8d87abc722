/** @module The `PORT` an entry point listens on, checked once for `main.ts` and `deno task dev`. */

/**
 * `PORT` (default 8000) as a port number, or a message naming the value as the operator wrote
 * it: `Number("abc")` is NaN, which `Deno.serve` reports as a stack trace.
 */
export function listenPort(raw = "8000"): number | { error: string } {
  const port = Number(raw);
  if (!/^\d{1,5}$/.test(raw) || port > 65535) {
    return { error: `PORT "${raw}" is not a port number (0–65535)` };
  }
  return port;
}

/**
 * The operator's message when `port` cannot be listened on (taken, or not ours to take), instead
 * of Deno's stack trace; `undefined` for any other error.
 */
export function listenRefusal(port: number, error: unknown): string | undefined {
  if (error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.PermissionDenied) {
    return `vestibule: cannot listen on port ${port}: ${error.message} (set PORT)`;
  }
  return undefined;
}
