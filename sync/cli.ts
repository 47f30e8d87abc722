/** @module `deno task sync`: parse flags, then sync once or in a loop until SIGINT/SIGTERM. */
import { parseArgs } from "node:util";
import { loadSyncConfig } from "./config.ts";
import { type Database, openDatabase } from "./database.ts";
import { formatSummary, runAttempt, selectTables } from "./run_attempt.ts";

const USAGE = `Usage: deno task sync [--config sync.json] [--once] [--dry-run] [--table NAME]...

  --config PATH   sync config (default: sync.json)
  --once          run one attempt and exit (status 1 if any table failed, was refused, or
                  was skipped because a signal stopped the attempt)
  --dry-run       show the plan; write nothing
  --table NAME    sync only this table (repeatable)`;

/** Where the CLI writes and what it reads; injected by tests and the demo. */
export interface CliOptions {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  env?: (name: string) => string | undefined;
  /** Stops loop mode like SIGTERM does. */
  signal?: AbortSignal;
}

const DEFAULT_IO: CliOptions = {
  stdout: (line) => console.log(line),
  stderr: (line) => console.error(line),
};

/** The longest delay `setTimeout` takes; a longer one fires after 1 ms (2^31 − 1 ms, 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolve after `ms` (any length), or as soon as `signal` aborts. */
async function delay(ms: number, signal: AbortSignal): Promise<void> {
  const end = Date.now() + ms;
  for (let left = ms; left > 0 && !signal.aborted; left = end - Date.now()) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.min(left, MAX_TIMER_MS));
      signal.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
    });
  }
}

/**
 * Run the sync CLI with `args` and return the exit status. Loop mode stops cleanly on
 * SIGINT/SIGTERM after the current destination's transaction, or when `signal` aborts.
 */
export async function main(
  args: string[],
  io: CliOptions = DEFAULT_IO,
): Promise<number> {
  const { signal } = io;
  let flags;
  try {
    flags = parseArgs({
      // `deno task sync -- --once` passes the `--` on, as `deno task explain -- …` does.
      args: args[0] === "--" ? args.slice(1) : args,
      options: {
        config: { type: "string", default: "sync.json" },
        once: { type: "boolean", default: false },
        "dry-run": { type: "boolean", default: false },
        table: { type: "string", multiple: true },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    io.stderr(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (flags.help) {
    io.stdout(USAGE);
    return 0;
  }
  let config;
  try {
    config = await loadSyncConfig(flags.config, io.env);
    // A misspelt --table is a config error, not a failed attempt to retry forever.
    selectTables(config, flags.table);
  } catch (error) {
    io.stderr((error as Error).message);
    return 2;
  }

  const controller = new AbortController();
  signal?.addEventListener("abort", () => controller.abort(), { once: true });
  const stop = () => {
    if (!controller.signal.aborted) {
      io.stderr("Stopping after the current transaction");
      controller.abort();
    }
  };
  const databases = new Map<string, Database>();
  try {
    for (const [region, url] of Object.entries(config.databases)) {
      databases.set(region, openDatabase(region, url));
    }
  } catch {
    // The driver's error quotes the URL, password included, and not always as configured (it
    // rewrites a multi-host URL first), so scrubbing its text is not enough: say nothing of it.
    const region = Object.keys(config.databases)[databases.size];
    io.stderr(
      `Cannot parse the database URL of region "${region}" (percent-encode # ? / @ : in passwords)`,
    );
    await Promise.all([...databases.values()].map((db) => db.close()));
    return 2;
  }
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const name of signals) Deno.addSignalListener(name, stop);

  let status = 0;
  try {
    while (true) {
      try {
        const reports = await runAttempt(config, databases, {
          dryRun: flags["dry-run"],
          tables: flags.table,
          signal: controller.signal,
          log: io.stdout,
          progress: io.stderr,
        });
        io.stdout(formatSummary(reports));
        if (reports.some((r) => r.error)) status = 1;
      } catch (error) {
        // A refused or failed attempt is logged; loop mode tries again after the delay.
        const message = [...databases.values()].reduce(
          (text, db) => db.scrub(text),
          (error as Error).message,
        );
        io.stdout(JSON.stringify({
          time: new Date().toISOString(),
          level: "error",
          msg: "sync attempt failed",
          error: message,
        }));
        io.stderr(message);
        status = 1;
      }
      if (flags.once || controller.signal.aborted) break;
      await delay(config.interval_seconds * 1000, controller.signal);
      if (controller.signal.aborted) break;
    }
  } finally {
    for (const name of signals) Deno.removeSignalListener(name, stop);
    await Promise.all([...databases.values()].map((db) => db.close()));
  }
  // A signal is the normal way to end loop mode.
  return flags.once ? status : 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
