/** @module One sync attempt: check every table everywhere, then sync destinations table by table. */
import type { SyncConfig } from "./config.ts";
import type { Database } from "./database.ts";
import type { SegmentOptions } from "./diff.ts";
import { describeError, SyncRefusedError, SyncStoppedError } from "./errors.ts";
import { attemptsOf, isTransient, withRetry } from "./retry.ts";
import { syncTables, type TableJob, type TableOutcome } from "./sync_table.ts";
import { resolveTableSpec, type TableSpec } from "./table_spec.ts";

/** One table at one destination, as logged and summarised. */
export interface TableReport {
  destination: string;
  table: string;
  /** `skipped`: not attempted, because a signal stopped the attempt first. */
  status: "in_sync" | "applied" | "planned" | "refused" | "failed" | "skipped";
  inserts: number;
  updates: number;
  deletes: number;
  extra: number;
  owner_rows: number;
  destination_rows: number;
  bytes_read: number;
  bytes_sent: number;
  duration_ms: number;
  attempts: number;
  dry_run: boolean;
  error?: string;
  /** What was left undone without failing the table. */
  warnings?: string[];
}

/** Options for {@linkcode runAttempt}. */
export interface AttemptOptions {
  dryRun: boolean;
  /** Only these tables (as configured, or without the `public.` prefix). */
  tables?: string[];
  /**
   * Stops the attempt between transactions (destinations, or tables tried one by one); the tables
   * not attempted are reported as `skipped`.
   */
  signal?: AbortSignal;
  segments?: SegmentOptions;
  batchRows?: number;
  /** Receives one JSON line per table and per notable event. */
  log: (line: string) => void;
  /** Receives human progress lines for long syncs. */
  progress?: (line: string) => void;
  /** Retry policy for transient failures; injected by tests. */
  retryDelayMs?: number;
}

/**
 * Resolve `--table` arguments against the config, each table once (`subject` and
 * `public.subject` are one table), in config order.
 *
 * @throws {TypeError} for a name the config does not list
 */
export function selectTables(config: SyncConfig, names: string[] | undefined) {
  if (!names || names.length === 0) return config.tables;
  const selected = names.map((name) => {
    const qualified = name.includes(".") ? name : `public.${name}`;
    const table = config.tables.find((t) => t.name === qualified);
    if (!table) {
      throw new TypeError(
        `Cannot sync table "${name}": it is not in the config (${
          config.tables.map((t) => `"${t.name}"`).join(", ")
        })`,
      );
    }
    return table;
  });
  return [...new Set(selected)].sort((a, b) => config.tables.indexOf(a) - config.tables.indexOf(b));
}

function jsonLine(fields: Record<string, unknown>): string {
  return JSON.stringify({ time: new Date().toISOString(), ...fields });
}

/**
 * Run one attempt. Every selected table is checked on every database first; a mismatch anywhere
 * refuses the whole attempt before any write. A destination that cannot be reached is left out of
 * that check and each of its tables is reported `failed`; an owner that cannot be reached fails
 * the attempt. Then each destination gets every table in one transaction, so tables that
 * reference each other can change together. If that transaction fails, each table is tried again
 * in its own transaction, so one failing table does not hold back the others; a failed table is
 * reported and the next one runs.
 *
 * @param databases region to open database; must hold every region of the config
 * @throws {SyncRefusedError} when a table's shape differs between reachable databases
 * @throws the owner's connection error (`at "us": …`) when the owner cannot be reached
 */
export async function runAttempt(
  config: SyncConfig,
  databases: Map<string, Database>,
  options: AttemptOptions,
): Promise<TableReport[]> {
  const tables = selectTables(config, options.tables);
  const owner = databases.get(config.owner)!;
  const destinations = [...databases.values()].filter((db) => db.region !== config.owner);
  const scrubAll = (text: string) => [...databases.values()].reduce((t, db) => db.scrub(t), text);
  const retry = {
    baseDelayMs: options.retryDelayMs,
    signal: options.signal,
    onRetry: (error: unknown, attempt: number) =>
      options.log(jsonLine({
        level: "warn",
        msg: "transient failure, retrying",
        attempt,
        error: scrubAll((error as Error).message),
      })),
  };
  options.log(jsonLine({
    level: "info",
    msg: "sync attempt started",
    owner: config.owner,
    databases: Object.fromEntries([...databases.values()].map((db) => [db.region, db.label])),
    tables: tables.map((t) => t.name),
    dry_run: options.dryRun,
  }));
  // A destination that cannot be reached (connection refused or timed out, login or database
  // refused) fails its own tables; the others are still checked and synced. Without the owner
  // nothing can be synced: that fails the attempt.
  const unreachable = new Map<Database, Error>();
  const probe = async (db: Database) => {
    // A stop ends a connect try under way: one to a host that never answers ran out its 10 s
    // connect timeout after the signal, a third of Kubernetes' grace period.
    let abandoned = false;
    const stop = () => {
      abandoned = true;
      db.abandon().catch(() => {});
    };
    options.signal?.addEventListener("abort", stop, { once: true });
    try {
      await db.sql`SELECT 1`;
      // An answer already on its way when the stop came: the connection is ending all the same.
      if (abandoned) throw new Error("abandoned");
    } catch (error) {
      if (abandoned) {
        throw new SyncStoppedError(
          `Not attempted: the sync was stopped by a signal while "${db.region}" was being reached`,
        );
      }
      // Say where, in retry lines too; the error itself is kept (retries read its code).
      if (error instanceof Error) error.message = `at "${db.region}": ${error.message}`;
      throw error;
    } finally {
      options.signal?.removeEventListener("abort", stop);
    }
  };
  await Promise.all([owner, ...destinations].map(async (db) => {
    try {
      await withRetry(() => probe(db), retry);
    } catch (error) {
      unreachable.set(
        db,
        error instanceof Error ? error : new Error(`at "${db.region}": ${error}`),
      );
    }
  }));
  if (unreachable.has(owner)) throw unreachable.get(owner);
  const reachable = [owner, ...destinations.filter((db) => !unreachable.has(db))];
  const specs = new Map<string, TableSpec>();
  for (const table of tables) {
    const { value } = await withRetry(
      () => resolveTableSpec(table, reachable),
      retry,
    );
    specs.set(table.name, value);
  }

  const reports: TableReport[] = [];
  for (const destination of destinations) {
    const jobs: TableJob[] = tables.map((table) => ({
      spec: specs.get(table.name)!,
      config: table,
    }));
    // Bytes and time are counted per table around its own diff and writes.
    const usage = new Map(tables.map((t) => [t.name, { read: 0, sent: 0, ms: 0 }]));
    const lastProgress = new Map<string, number>();
    const started = performance.now();
    const sync = (selected: TableJob[]) =>
      withRetry(
        () =>
          syncTables(selected, { owner, destination }, {
            dryRun: options.dryRun,
            signal: options.signal,
            onLockWait: () => {
              // A --once cron run behind a stuck session must not just hang in silence.
              options.log(jsonLine({
                level: "warn",
                msg: "another sync holds the destination, waiting",
                destination: destination.region,
              }));
              options.progress?.(
                `waiting: another sync holds "${destination.region}" (stop with SIGTERM)`,
              );
            },
            segments: options.segments,
            batchRows: options.batchRows,
            onProgress: (table, p) => {
              const now = performance.now();
              if (now - (lastProgress.get(table) ?? started) < 2000) return;
              lastProgress.set(table, now);
              const done = p.inserted + p.updated + p.deleted;
              options.progress?.(
                `progress ${destination.region} ${table}: ${done}/${p.total} rows written (${p.inserted} inserted, ${p.updated} updated, ${p.deleted} deleted)`,
              );
            },
            track: async (table, work) => {
              const at = performance.now();
              const read = owner.bytesRead() + destination.bytesRead();
              const sent = owner.bytesSent() + destination.bytesSent();
              try {
                return await work();
              } finally {
                const use = usage.get(table)!;
                use.read += owner.bytesRead() + destination.bytesRead() - read;
                use.sent += owner.bytesSent() + destination.bytesSent() - sent;
                use.ms += performance.now() - at;
              }
            },
          }),
        retry,
      );
    // Stopped before this destination: every table is reported as skipped.
    let settled: { result: TableOutcome | Error; attempts: number }[] = [];
    /** Why the destination's one transaction failed, when tables then ran one by one. */
    let together: Error | undefined;
    /** A signal stopped the wait for another sync's lock: said in every skipped table. */
    let stopped: SyncStoppedError | undefined;
    const down = unreachable.get(destination);
    if (down instanceof SyncStoppedError) {
      stopped = down;
    } else if (down) {
      settled = jobs.map(() => ({ result: down, attempts: attemptsOf(down) }));
    } else if (!options.signal?.aborted) {
      try {
        const { value, attempts } = await sync(jobs);
        settled = value.map((result) => ({ result, attempts }));
      } catch (error) {
        if (error instanceof SyncStoppedError) {
          stopped = error; // every table is reported as skipped, with why
        } else if (jobs.length === 1 || isTransient(error)) {
          settled = jobs.map(() => ({ result: error as Error, attempts: attemptsOf(error) }));
        } else {
          // One table's failure (say, a row the destination's own constraint refuses) would hold
          // back every other table on every run: try each in its own transaction. Tables that need
          // each other's rows then fail alone, as they failed together.
          options.log(jsonLine({
            level: "warn",
            msg: "destination transaction failed, syncing table by table",
            destination: destination.region,
            error: scrubAll(describeError(error as Error)),
          }));
          together = error as Error;
          settled = [];
          for (const job of jobs) {
            if (options.signal?.aborted) break;
            try {
              const { value: [result], attempts } = await sync([job]);
              settled.push({ result, attempts });
            } catch (error) {
              if (error instanceof SyncStoppedError) {
                stopped = error;
                break;
              }
              settled.push({ result: error as Error, attempts: attemptsOf(error) });
            }
          }
        }
      }
    }
    // Why a table without a result was not attempted.
    let skipped = "Not attempted: the sync was stopped by a signal";
    if (together) {
      // Its write may be what failed the shared transaction: say what did.
      skipped =
        `Not attempted on its own: the sync was stopped by a signal after the destination's transaction failed: ${
          owner.scrub(destination.scrub(describeError(together)))
        }`;
    } else if (stopped) skipped = stopped.message;
    for (const [i, table] of tables.entries()) {
      // Tables after a stop in the table-by-table retry have no result either.
      const { result, attempts } = settled[i] ?? { result: undefined, attempts: 0 };
      const use = usage.get(table.name)!;
      const base = {
        destination: destination.region,
        table: table.name,
        dry_run: options.dryRun,
      };
      const measured = {
        bytes_read: use.read,
        bytes_sent: use.sent,
        duration_ms: Math.round(use.ms),
      };
      const report: TableReport = result === undefined || result instanceof Error
        ? {
          ...base,
          status: result === undefined
            ? "skipped"
            : result instanceof SyncRefusedError
            ? "refused"
            : "failed",
          inserts: 0,
          updates: 0,
          deletes: 0,
          extra: 0,
          owner_rows: 0,
          destination_rows: 0,
          ...measured,
          attempts, // 0 when skipped
          error: result === undefined
            ? skipped
            : owner.scrub(destination.scrub(describeError(result))),
        }
        : {
          ...base,
          status: result.status,
          inserts: result.inserts,
          updates: result.updates,
          deletes: result.deletes,
          extra: result.extra,
          owner_rows: result.ownerRows,
          destination_rows: result.destinationRows,
          ...measured,
          attempts,
          ...(result.warnings ? { warnings: result.warnings.map((w) => scrubAll(w)) } : {}),
        };
      reports.push(report);
      options.log(jsonLine({
        level: report.error ? "error" : report.warnings ? "warn" : "info",
        msg: report.error ? "table sync failed" : "table synced",
        ...report,
      }));
    }
  }
  return reports;
}

/** A fixed-width table of reports for people. */
export function formatSummary(reports: TableReport[]): string {
  const header = [
    "destination",
    "table",
    "status",
    "inserted",
    "updated",
    "deleted",
    "extra",
    "rows",
    "bytes read",
    "ms",
  ];
  const rows = reports.map((r) => [
    r.destination,
    r.table,
    r.dry_run && r.status === "planned" ? "planned (dry run)" : r.status,
    String(r.inserts),
    String(r.updates),
    String(r.deletes),
    String(r.extra),
    String(r.owner_rows),
    String(r.bytes_read),
    String(r.duration_ms),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  const errors = reports.flatMap((r) =>
    [r.error, ...(r.warnings ?? [])].filter(Boolean).map((m) => `${r.destination} ${r.table}: ${m}`)
  );
  return [line(header), ...rows.map(line), ...errors].join("\n");
}
