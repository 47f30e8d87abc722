/**
 * @module Where an entry point listens: `PORT`, checked once for `main.ts`, `deno task serve` and
 * `deno task dev`, and `VESTIBULE_HOST`, for the first two; and `DENO_JOBS`, the workers of
 * `deno task serve`.
 */
import { isIP } from "node:net";

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
 * The operator's message when `port` cannot be listened on (taken, or not ours to take) or
 * `hostname` is no address of this machine (copied from another host, a container's old IP),
 * instead of Deno's stack trace; `undefined` for any other error.
 */
export function listenRefusal(
  port: number,
  error: unknown,
  hostname = "0.0.0.0",
): string | undefined {
  if (error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.PermissionDenied) {
    return `vestibule: cannot listen on port ${port}: ${error.message} (set PORT)`;
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return `vestibule: cannot listen on ${hostname}: not an address of this machine (set VESTIBULE_HOST)`;
  }
  // An IPv6 address listenHost() takes that the kernel or resolver does not: a link-local one
  // without its zone (`fe80::1`: EINVAL), a zone on another (`::1%lo`: no such name).
  if (
    error instanceof Error && hostname.includes(":") &&
    /\(os error 22\)|failed to lookup address/.test(error.message)
  ) {
    return `vestibule: cannot listen on ${hostname}: ${error.message} (set VESTIBULE_HOST)`;
  }
  return undefined;
}

/**
 * `VESTIBULE_HOST` (default `0.0.0.0`, every IPv4 interface, as `Deno.serve` and `deno serve`
 * listen) as an address to listen on, or a message naming the value: `127.0.0.1` keeps vestibule
 * to this machine, behind a proxy on it. A name is refused: which address it means is the
 * resolver's to say, once, at start-up.
 */
export function listenHost(raw = "0.0.0.0"): string | { error: string } {
  if (isIP(raw) === 0) {
    return {
      error: `VESTIBULE_HOST "${raw}" is not an IP address to listen on ` +
        "(0.0.0.0 for every IPv4 interface, :: for every interface, 127.0.0.1 for this machine only)",
    };
  }
  return raw;
}

/**
 * `DENO_JOBS` unchanged if unset or a number of workers Deno reads (`4`, `04`, `+4`), else a
 * message naming it: Deno reads `4 `, `four`, `0` or an empty value (a blank manifest entry) as
 * unset and serves on one worker without a word, most of the capacity asked for gone.
 */
export function serveJobs(raw: string | undefined): string | undefined | { error: string } {
  if (raw === undefined) return raw;
  // Deno reads it as a 64-bit unsigned number: one more digit, and it is unset to Deno too.
  if (/^\+?\d+$/.test(raw) && Number(raw) >= 1 && BigInt(raw) <= MAX_DENO_JOBS) return raw;
  return { error: `DENO_JOBS "${raw}" is not a number of workers (1 or more; unset, one per CPU)` };
}

/** The largest `DENO_JOBS` Deno reads as a number (a `usize`); beyond, it serves on one worker. */
const MAX_DENO_JOBS = 0xffff_ffff_ffff_ffffn;

/** The checked value, or its message on stderr and exit 1: no stack trace for the operator. */
export function orExit<T>(checked: T | { error: string }): T {
  if (typeof checked === "object" && checked !== null && "error" in checked) {
    console.error(`vestibule: ${checked.error}`);
    Deno.exit(1);
  }
  return checked;
}
