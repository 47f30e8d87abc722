/** @module Brings one table at one destination in line: one owner snapshot, one destination transaction. */
import type { TableConfig } from "./config.ts";
import type { Database } from "./database.ts";
import { diffTable, planCounts, type SegmentOptions } from "./diff.ts";
import { applyPlan, type ProgressListener } from "./apply.ts";
import { SyncRefusedError } from "./errors.ts";
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
}

/** Options for {@linkcode syncTable}. */
export interface SyncTableOptions {
  dryRun: boolean;
  segments?: SegmentOptions;
  batchRows?: number;
  onProgress?: ProgressListener;
}

/**
 * Diff and apply one table. The owner is read in one `REPEATABLE READ READ ONLY` transaction;
 * the destination's diff and every write happen in one `REPEATABLE READ` transaction, so a
 * failure anywhere rolls the destination back to exactly what it was.
 *
 * @throws {SyncRefusedError} when deletes exceed `max_delete_ratio`
 */
export async function syncTable(
  table: { spec: TableSpec; config: TableConfig },
  databases: { owner: Database; destination: Database },
  options: SyncTableOptions,
): Promise<TableOutcome> {
  const { spec, config } = table;
  const { owner, destination } = databases;
  return await owner.sql.begin("isolation level repeatable read read only", async (o) => {
    await o.unsafe(PIN_SESSION_SQL);
    const mode = options.dryRun ? "read only" : "read write";
    return await destination.sql.begin(`isolation level repeatable read ${mode}`, async (d) => {
      await d.unsafe(PIN_SESSION_SQL);
      // Deferrable foreign keys and unique constraints are checked at commit, once every
      // delete, update and insert of the table is in: rows may reference rows inserted later.
      await d.unsafe("SET CONSTRAINTS ALL DEFERRED");
      const plan = await diffTable(spec, { owner: o, destination: d }, options.segments);
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
      if (outcome.deletes > config.max_delete_ratio * plan.destinationRows) {
        throw new SyncRefusedError(
          `Cannot sync table "${spec.name}" to "${destination.region}": ${outcome.deletes} deletes of ${plan.destinationRows} rows exceed max_delete_ratio ${config.max_delete_ratio}`,
        );
      }
      if (outcome.inserts + outcome.updates + outcome.deletes === 0) return outcome;
      if (options.dryRun) return { ...outcome, status: "planned" };
      await applyPlan(plan, { spec, owner: o, destination: d }, {
        deleteMissing: config.delete_missing,
        batchRows: options.batchRows,
        onProgress: options.onProgress,
      });
      return { ...outcome, status: "applied" };
    });
  });
}
