/** @module Entry point: reads the environment and the rules file, opens what it needs, serves the app. */
import { createApp } from "./app.ts";
import { loadCountryLookup } from "./lib/geo_ip.ts";
import { bufferedLineWriter, LONE_WRITER_BATCH, PIPE_BUF } from "./lib/line_writer.ts";
import { listenHost, listenPort, listenRefusal, orExit } from "./lib/listen_port.ts";
import { loadRulesForServing } from "./lib/serve_rules.ts";
import { readMetricsToken } from "./lib/metrics_endpoint.ts";
import { proxyNotice } from "./lib/proxy_env.ts";
import { shutdownGraceMs } from "./lib/shutdown_grace.ts";

const rulesPath = Deno.env.get("VESTIBULE_RULES") ?? "./rules.json";
const config = await loadRulesForServing(rulesPath, (name) => Deno.env.get(name)).catch((error) => {
  // A configuration error is the operator's to fix: say what is wrong, without a stack trace.
  const unread = error instanceof Deno.errors.NotFound ? " (set VESTIBULE_RULES)" : "";
  console.error(`vestibule: ${error instanceof Error ? error.message : String(error)}${unread}`);
  Deno.exit(1);
});
// Loaded once at start-up (about 0.3 s, 33 MB), only when the rules ask for it.
const countryLookup = config.geo.ipLookup ? await loadCountryLookup() : undefined;
// KV holds OCAP's shared state; VESTIBULE_KV is a file path or KV Connect URL (unset on Deploy).
const kv = config.ocap ? await openKvOrExit(Deno.env.get("VESTIBULE_KV")) : undefined;

// Deno's fetch takes a forward proxy from the environment for every upstream call: say so.
const proxy = proxyNotice((name) => Deno.env.get(name));
if (proxy) console.error(proxy);

let metricsToken: string | undefined;
try {
  metricsToken = readMetricsToken(Deno.env.get("VESTIBULE_METRICS_TOKEN"));
} catch (error) {
  console.error(`vestibule: ${(error as Error).message}`);
  Deno.exit(1);
}

// Under `deno serve --parallel` (serve.ts imports this module) the workers share stdout, and
// only writes within PIPE_BUF keep their lines from mixing; alone, larger batches are safe.
export const accessLog = bufferedLineWriter(Deno.stdout, {
  batchBytes: import.meta.main ? LONE_WRITER_BATCH : PIPE_BUF,
});

/** The app; `serve.ts` hands it to `deno serve`, `deno run main.ts` listens below. */
export const app = createApp({
  config,
  kv,
  countryLookup,
  log: accessLog,
  metricsToken,
  // Deno Deploy terminates TLS in front of every app; self-hosted, main.ts listens on plain HTTP.
  scheme: Deno.env.get("DENO_DEPLOYMENT_ID") ? "https" : "http",
  // Under `deno serve --parallel` the workers merge their metrics; alone, there is no one to ask.
  metricsChannel: metricsToken ? "vestibule-metrics" : undefined,
});

/**
 * How long a stop (SIGTERM from a load balancer or orchestrator, or Ctrl-C) waits for requests in
 * flight; by default below Kubernetes' default 30 s grace period, after which the process is
 * killed anyway.
 */
export const SHUTDOWN_GRACE_MS = graceOrExit();

/**
 * How long a stop waits for the log reader after the grace period ran out: Deno.exit drops the lines
 * still queued, those of answers that finished in the grace period's last moments included.
 */
export const DRAIN_AFTER_GRACE_MS = 1000;

/**
 * A second signal this soon after the first is the same stop: `deno task` relays SIGINT/SIGTERM to
 * its child, which often has it already (Ctrl-C signals the terminal's whole process group, as
 * systemd's default `KillMode=control-group` does), a few milliseconds apart.
 */
export const RELAYED_SIGNAL_MS = 100;

/** `VESTIBULE_SHUTDOWN_GRACE_MS`, or a message for the operator (exit 1). */
function graceOrExit(): number {
  const ms = shutdownGraceMs(Deno.env.get("VESTIBULE_SHUTDOWN_GRACE_MS"));
  if (typeof ms === "number") return ms;
  console.error(`vestibule: ${ms.error}`);
  Deno.exit(1);
}

/** OCAP's store; one it cannot open (an empty value, a missing directory) is a message, not a trace. */
async function openKvOrExit(path: string | undefined): Promise<Deno.Kv> {
  try {
    // Deno opens `kv.sqlite3 ` (or ` `) as a file of that name: another store than its neighbours'
    // `kv.sqlite3`, so OCAP would call a provider twice for one code. A KV Connect URL read from
    // a mounted file ends in a newline, which the URL parser drops; one before it is a file name.
    const url = /^https?:\/\//i.test(path ?? "");
    if (path !== undefined && (path.trimStart() !== path || (!url && path.trimEnd() !== path))) {
      throw new TypeError("spaces around the value (or only spaces)");
    }
    return await Deno.openKv(path);
  } catch (error) {
    console.error(
      `vestibule: cannot open VESTIBULE_KV ${JSON.stringify(path)}: ${(error as Error).message} ` +
        "(a file path or KV Connect URL; unset on Deno Deploy)",
    );
    Deno.exit(1);
  }
}

/** Listens on `port`; a port already taken (or not ours to take) is a message, not a trace. */
function listen(hostname: string, port: number): Deno.HttpServer {
  try {
    return Deno.serve({ hostname, port }, app.fetch);
  } catch (error) {
    const refusal = listenRefusal(port, error, hostname);
    if (refusal === undefined) throw error;
    console.error(refusal);
    Deno.exit(1);
  }
}

if (import.meta.main) {
  const server = listen(
    orExit(listenHost(Deno.env.get("VESTIBULE_HOST"))),
    // Not Deno's `Invalid port: NaN` trace.
    orExit(listenPort(Deno.env.get("PORT"))),
  );
  // Stop accepting, let answers in flight finish (Deno.serve's shutdown waits for them), then
  // exit, which writes the access lines still buffered. Without this a stop cut answers off.
  let stopping = false;
  let stoppedAt = 0;
  const stop = async () => {
    if (stopping) { // A second Ctrl-C does not wait; the copy `deno task` relays does.
      if (performance.now() - stoppedAt > RELAYED_SIGNAL_MS) Deno.exit(0);
      return;
    }
    stopping = true;
    stoppedAt = performance.now();
    const end = performance.now() + SHUTDOWN_GRACE_MS;
    await Promise.race([server.shutdown(), delay(SHUTDOWN_GRACE_MS)]);
    // The last lines, unless the log reader has stalled: what is left of the grace period, and at
    // least DRAIN_AFTER_GRACE_MS, as serve.ts gives, so that the lines of answers that finished
    // just before the grace ran out are written, not cut off by the exit.
    await Promise.race([
      accessLog.stop(),
      delay(Math.max(end - performance.now(), DRAIN_AFTER_GRACE_MS)),
    ]);
    Deno.exit(0);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(signal, stop);
}

/** A promise that resolves after `ms`; its timer keeps no stopping process alive. */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => Deno.unrefTimer(setTimeout(resolve, ms)));
}
