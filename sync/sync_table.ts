/** @module Brings tables at one destination in line: one owner snapshot, one destination transaction. */
import type postgres from "postgres";
import type { TableConfig } from "./config.ts";
import type { Database } from "./database.ts";
import { diffTable, planCounts, type SegmentOptions } from "./diff.ts";
import { type PlanWriter, planWriter, type ProgressListener } from "./apply.ts";
import { SyncRefusedError, SyncStoppedError } from "./errors.ts";
import { PIN_SESSION_SQL } from "./sql_fragments.ts";
import type { TableSpec } from "./table_spec.ts";

/** What happened to one table at one destination. */
export interface TableOutcome {
  status: "in_sync" | "applied" | "planned";
  inserts: number;
  updates: number;
  /** Deletes applied (or planned, in a dry run). */
  deletes: number;
  /** Destination-only rows left in place because `delete_missing` is off. */
  extra: number;
  ownerRows: number;
  destinationRows: number;
  /** What was left undone without failing the table (a sequence the login may not move). */
  warnings?: string[];
}

/** One table to sync. */
export interface TableJob {
  spec: TableSpec;
  config: TableConfig;
}

/** Options for {@linkcode syncTables}. */
export interface SyncTablesOptions {
  dryRun: boolean;
  segments?: SegmentOptions;
  batchRows?: number;
  /** Bytes of row text per statement, about (`ApplyOptions.batchBytes`). */
  batchBytes?: number;
  onProgress?: (table: string, progress: Parameters<ProgressListener>[0]) => void;
  /** Runs each table's share of the work (its diff, its writes), so the caller can measure it. */
  track?: <T>(table: string, work: () => Promise<T>) => Promise<T>;
  /** Stops a wait for another sync's lock on the destination ({@linkcode SyncStoppedError}). */
  signal?: AbortSignal;
  /** Called once when another sync holds the destination and this one starts to wait. */
  onLockWait?: () => void;
}

/**
 * Diff and apply `tables` (in config order) at one destination. The owner is read in one
 * `REPEATABLE READ READ ONLY` transaction, so every table comes from the same snapshot; the
 * destination's diffs and every write happen in one `REPEATABLE READ` transaction, so a failure
 * anywhere rolls the destination back to exactly what it was, and rows of one table may point at
 * rows another table's sync inserts or stops pointing at rows it deletes. Every table is diffed
 * before anything is written; then updates and inserts run parents first (config order), and
 * deletes children first (reverse order).
 *
 * @returns per table, its outcome, or the {@linkcode SyncRefusedError} that kept it unwritten
 * when its deletes exceed `max_delete_ratio` (the other tables are still written)
 */
export async function syncTables(
  tables: TableJob[],
  databases: { owner: Database; destination: Database },
  options: SyncTablesOptions,
): Promise<(TableOutcome | SyncRefusedError)[]> {
  const { owner, destination } = databases;
  const track = options.track ?? ((_table, work) => work());
  /** The destination's results once it committed. */
  let committed: (TableOutcome | SyncRefusedError)[] | undefined;
  // Two syncs writing one destination at once (a cron run over a manual one, two replicas of the
  // loop) would each plan the same inserts from their own snapshot, and the later one fail with a
  // duplicate key. A session lock taken before either transaction (so before both snapshots)
  // makes the second wait, then plan from what the first committed, with owner rows no older.
  if (!options.dryRun) await takeSyncLock(destination, options);
  try {
    return await owner.sql.begin("isolation level repeatable read read only", async (o) => {
      await o.unsafe(PIN_SESSION_SQL);
      committed = await syncAtDestination(tables, o, destination, options, track);
      return committed;
    });
  } catch (error) {
    // The owner's read-only transaction ended badly after the destination committed (its
    // connection lost at COMMIT): what was read was one snapshot and what was written stands. A
    // retry would find the tables in sync and report no writes.
    if (committed) return committed;
    throw error;
  } finally {
    if (!options.dryRun) {
      await destination.sql.unsafe(`SELECT pg_advisory_unlock(${SYNC_LOCK_KEY})`).catch(() => {
        // A lost connection has released it already.
      });
    }
  }
}

/** The session advisory lock a writing sync holds on its destination ("vest" in ASCII). */
const SYNC_LOCK_KEY = 0x76657374;

/** How often a sync waiting for another's lock asks again (and looks at its signal). */
const LOCK_POLL_MS = 250;

/**
 * Takes the destination's sync lock, asking again every {@linkcode LOCK_POLL_MS} instead of
 * blocking in `pg_advisory_lock`: a run waiting behind a long first sync, or a stuck session,
 * must still stop on SIGTERM, and then write nothing.
 *
 * @throws {SyncStoppedError} when `signal` aborts before the lock is free
 */
async function takeSyncLock(
  destination: Database,
  { signal, onLockWait }: Pick<SyncTablesOptions, "signal" | "onLockWait">,
): Promise<void> {
  for (let tries = 0;; tries++) {
    if (signal?.aborted) {
      // Only a wait for the lock is another sync's doing: a signal during a retry's backoff, or
      // before the first try, sent operators looking for a second process that never ran.
      throw new SyncStoppedError(
        tries === 0
          ? "Not attempted: the sync was stopped by a signal"
          : `Not attempted: the sync was stopped by a signal while another sync held "${destination.region}"`,
      );
    }
    const [{ locked }] = await destination.sql.unsafe<{ locked: boolean }[]>(
      `SELECT pg_try_advisory_lock(${SYNC_LOCK_KEY}) AS locked`,
    );
    if (locked) return;
    if (tries === 0) onLockWait?.();
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
}

async function syncAtDestination(
  tables: TableJob[],
  o: postgres.TransactionSql,
  destination: Database,
  options: SyncTablesOptions,
  track: NonNullable<SyncTablesOptions["track"]>,
): Promise<(TableOutcome | SyncRefusedError)[]> {
  // Not `read write` when writing: that would override a destination its operator made read-only
  // (`default_transaction_read_only`), which then fails the first write instead.
  const mode = options.dryRun ? " read only" : "";
  return await destination.sql.begin(`isolation level repeatable read${mode}`, work);

  async function work(d: postgres.TransactionSql) {
    // The destination's own time zone, before the pin: its defaults and triggers (a
    // `DEFAULT localtimestamp`) run in it when the rows are written.
    const [{ zone }] = await d.unsafe<{ zone: string }[]>(
      `SELECT current_setting('TimeZone') AS zone`,
    );
    await d.unsafe(PIN_SESSION_SQL);
    // Deferrable foreign keys and unique constraints are checked at commit, once every table's
    // deletes, updates and inserts are in: rows may reference rows inserted later.
    await d.unsafe("SET CONSTRAINTS ALL DEFERRED");
    const results: (TableOutcome | SyncRefusedError)[] = [];
    const writers: { table: string; writer: PlanWriter; outcome: TableOutcome }[] = [];
    for (const { spec, config } of tables) {
      const plan = await track(
        spec.name,
        () => diffTable(spec, { owner: o, destination: d }, options.segments),
      );
      const counts = planCounts(plan);
      const outcome: TableOutcome = {
        status: "in_sync",
        inserts: counts.inserts,
        updates: counts.updates,
        deletes: config.delete_missing ? counts.deletes : 0,
        extra: config.delete_missing ? 0 : counts.deletes,
        ownerRows: plan.ownerRows,
        destinationRows: plan.destinationRows,
      };
      // A ratio, not a product: 0.29 * 100 is 28.999999999999996, which refused 29 deletes.
      if (outcome.deletes / plan.destinationRows > config.max_delete_ratio) {
        results.push(
          new SyncRefusedError(
            `Cannot sync table "${spec.name}" to "${destination.region}": ${outcome.deletes} deletes of ${plan.destinationRows} rows exceed max_delete_ratio ${config.max_delete_ratio}`,
          ),
        );
      } else if (outcome.inserts + outcome.updates + outcome.deletes === 0) {
        results.push(outcome);
      } else if (options.dryRun) {
        results.push({ ...outcome, status: "planned" });
      } else {
        const applied: TableOutcome = { ...outcome, status: "applied" };
        results.push(applied);
        writers.push({
          table: spec.name,
          outcome: applied,
          writer: planWriter(plan, { spec, owner: o, destination: d }, {
            deleteMissing: config.delete_missing,
            batchRows: options.batchRows,
            batchBytes: options.batchBytes,
            onProgress: (p) => options.onProgress?.(spec.name, p),
          }),
        });
      }
    }
    // Hashes were computed in UTC; values travel as text that names its offset where it has one.
    if (writers.length) await d.unsafe(`SELECT set_config('TimeZone', $1, true)`, [zone]);
    for (const { table, writer } of writers) await track(table, () => writer.upsert());
    for (const { table, writer } of writers.toReversed()) {
      await track(table, () => writer.delete());
    }
    for (const { writer, outcome } of writers) {
      if (writer.warnings.length) outcome.warnings = writer.warnings;
    }
    return results;
  }
}

/**
 * {@linkcode syncTables} for one table.
 *
 * @throws {SyncRefusedError} when deletes exceed `max_delete_ratio`
 */
export async function syncTable(
  table: TableJob,
  databases: { owner: Database; destination: Database },
  options: Omit<SyncTablesOptions, "onProgress"> & { onProgress?: ProgressListener },
): Promise<TableOutcome> {
  const { onProgress } = options;
  const [result] = await syncTables([table], databases, {
    ...options,
    onProgress: onProgress && ((_table, progress) => onProgress(progress)),
  });
  if (result instanceof SyncRefusedError) throw result;
  return result;
}
