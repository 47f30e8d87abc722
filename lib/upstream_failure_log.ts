/**
 * @module Why an upstream call failed, on stderr: the access line and the metrics say only
 * `upstream_unavailable` or `upstream_invalid`, and a refused connection, a name that does not
 * resolve, a certificate that expired and a proxy in the way look the same there.
 */

/** At most one line per upstream and error in this many milliseconds. */
export const FAILURE_LINE_EVERY_MS = 1000;

/** Options for {@linkcode upstreamFailureLog}. */
export interface FailureLogOptions {
  write?: (line: string) => void;
  now?: () => number;
}

/**
 * A reporter of upstream failures: one JSON line per upstream and error code a second, with
 * `suppressed` counting the failures since the last line. The cause's text is Deno's, without the
 * URL it names (`for http://origin/path?query`): the path and query are never logged.
 */
export function upstreamFailureLog(
  { write = (line) => console.error(line), now = Date.now }: FailureLogOptions = {},
): (upstream: string, error: string, cause: unknown) => void {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (upstream, error, cause) => {
    const key = `${upstream}\n${error}`;
    const seen = last.get(key);
    const at = now();
    if (seen && at - seen.at < FAILURE_LINE_EVERY_MS) {
      seen.suppressed++;
      return;
    }
    last.set(key, { at, suppressed: 0 });
    write(JSON.stringify({
      msg: "upstream failed",
      upstream,
      error,
      cause: causeText(cause),
      ...(seen?.suppressed ? { suppressed: seen.suppressed } : {}),
    }));
  };
}

/** The innermost cause's message, without any URL in it (the request's, a proxy's). */
export function causeText(error: unknown): string {
  let inner = error;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  const text = inner instanceof Error ? inner.message : String(inner);
  // Deno 2 writes `error sending request for url (<URL>): client error …`: the whole clause goes,
  // where cutting the URL alone took its `):` along and left a bracket open. To the last `): `
  // before a space: a URL has no space, but its path or query may hold `):`.
  return text.replace(/ for url \(\S*\):(?= )/g, ":").replace(/ for \S+ \(/g, " (")
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, "<url>").replace(/\s+/g, " ").slice(0, 500);
}

/** The process's reporter, shared by every upstream call. */
export const reportUpstreamFailure = upstreamFailureLog();
