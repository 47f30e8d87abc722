/**
 * @module Entry for `deno serve --parallel` (`deno task serve`): the same app as `main.ts`, but
 * `deno serve` does the listening, once per worker, so `main.ts` must not be the main module.
 */
import {
  accessLog,
  app,
  DRAIN_AFTER_GRACE_MS,
  RELAYED_SIGNAL_MS,
  SHUTDOWN_GRACE_MS,
} from "./main.ts";

// `deno serve` drains the answers in flight on SIGTERM or Ctrl-C, but waits for one that never
// ends (an event stream, a long download) until SIGKILL; like `main.ts`, each worker gives up after
// the grace period. Unreferenced, the timer keeps no worker alive once the drain is done. A
// listener replaces Deno's own exit on a second signal, so that is done here too, as main.ts does.
let stopping = false;
let stoppedAt = 0;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(signal, () => {
    if (stopping) {
      if (performance.now() - stoppedAt > RELAYED_SIGNAL_MS) Deno.exit(0);
      return;
    }
    stopping = true;
    stoppedAt = performance.now();
    const timer = setTimeout(async () => {
      // The last lines, unless the log reader has stalled. Every worker waits the whole time: the
      // first Deno.exit ends them all, with the lines another worker is still writing.
      void accessLog.stop();
      await new Promise((resolve) => setTimeout(resolve, DRAIN_AFTER_GRACE_MS));
      Deno.exit(0);
    }, SHUTDOWN_GRACE_MS);
    Deno.unrefTimer(timer);
  });
}

export default { fetch: app.fetch } satisfies Deno.ServeDefaultExport;
