/** @module Applies a diff plan to the destination in bounded batches, values moved as text. */
import type postgres from "postgres";
import { type DiffPlan, planCounts } from "./diff.ts";
import type { TableSpec } from "./table_spec.ts";
import {
  afterCondition,
  type Key,
  keyJoin,
  keyJson,
  keyOrder,
  type KeyRange,
  Params,
  quoteIdentList,
  rangeCondition,
  rowJson,
} from "./sql_fragments.ts";

type Tx = postgres.TransactionSql;

/** Called after each batch so a long first sync can show progress. */
export type ProgressListener = (
  progress: { inserted: number; updated: number; deleted: number; total: number },
) => void;

/** Options for {@linkcode applyPlan}. */
export interface ApplyOptions {
  /** Rows per statement. */
  batchRows?: number;
  /** Apply `deletes` and `deleteRanges`; otherwise they are left in place (and reported). */
  deleteMissing: boolean;
  onProgress?: ProgressListener;
}

/** Cast element `i` of JSON array `alias` to the column's type; the server parses the text. */
function castColumns(spec: TableSpec, alias: string) {
  return spec.columns.map((c, i) => `(${alias}->>${i})::${c.type}`);
}

/** Owner rows for `keys`, each as a JSON array of column text. */
async function fetchRows(owner: Tx, spec: TableSpec, keys: Key[]): Promise<string[][]> {
  const rows = await owner.unsafe<{ r: string }[]>(
    `SELECT ${rowJson(spec, "t.")} AS r
     FROM json_array_elements($1::text::json) AS j(k)
     JOIN ${spec.sqlName} AS t ON ${keyJoin(spec, "j.k", undefined, "t.")}`,
    [JSON.stringify(keys)],
    { prepare: false },
  );
  return rows.map((row) => JSON.parse(row.r));
}

async function insertRows(destination: Tx, spec: TableSpec, rows: string[][]) {
  if (rows.length === 0) return;
  await destination.unsafe(
    `INSERT INTO ${spec.sqlName} (${quoteIdentList(spec.columns)})${
      spec.columns.some((c) => c.identityAlways) ? " OVERRIDING SYSTEM VALUE" : ""
    }
     SELECT ${
      castColumns(spec, "j.r").join(", ")
    } FROM json_array_elements($1::text::json) AS j(r)`,
    [JSON.stringify(rows)],
    { prepare: false },
  );
}

async function updateRows(destination: Tx, spec: TableSpec, rows: string[][]) {
  const casts = castColumns(spec, "j.r");
  // Key columns too: a key equal by value may still differ in form (numeric 1.0 vs 1.00).
  // A GENERATED ALWAYS identity column can only be updated to DEFAULT; it is the key (equal).
  const assignments = spec.columns.flatMap((c, i) =>
    c.identityAlways ? [] : [`${quoteIdentList([c])} = ${casts[i]}`]
  );
  if (rows.length === 0 || assignments.length === 0) return;
  const offsets = spec.key.map((k) => spec.columns.findIndex((c) => c.name === k.name));
  await destination.unsafe(
    `UPDATE ${spec.sqlName} AS t SET ${assignments.join(", ")}
     FROM json_array_elements($1::text::json) AS j(r)
     WHERE ${keyJoin(spec, "j.r", offsets, "t.")}`,
    [JSON.stringify(rows)],
    { prepare: false },
  );
}

async function deleteKeys(destination: Tx, spec: TableSpec, keys: Key[]) {
  await destination.unsafe(
    `DELETE FROM ${spec.sqlName} AS t USING json_array_elements($1::text::json) AS j(k)
     WHERE ${keyJoin(spec, "j.k", undefined, "t.")}`,
    [JSON.stringify(keys)],
    { prepare: false },
  );
}

async function deleteRange(destination: Tx, spec: TableSpec, range: KeyRange) {
  const params = new Params();
  await destination.unsafe(
    `DELETE FROM ${spec.sqlName} WHERE ${rangeCondition(spec, range, params)}`,
    params.values,
    { prepare: false },
  );
}

/** Stream every owner row of `range` in key order, `batch` rows at a time. */
async function* rangeRows(owner: Tx, spec: TableSpec, range: KeyRange, batch: number) {
  let after: Key | null = null;
  while (true) {
    const params = new Params();
    const where = [rangeCondition(spec, range, params)];
    if (after) where.push(afterCondition(spec, after, params));
    const rows: { k: string; r: string }[] = await owner.unsafe(
      `SELECT ${keyJson(spec)} AS k, ${rowJson(spec)} AS r FROM ${spec.sqlName}
       WHERE ${where.join(" AND ")} ORDER BY ${keyOrder(spec)} LIMIT ${batch}`,
      params.values,
      { prepare: false },
    );
    if (rows.length === 0) return;
    yield rows.map((row) => JSON.parse(row.r) as string[]);
    if (rows.length < batch) return;
    after = JSON.parse(rows[rows.length - 1].k);
  }
}

/**
 * Apply `plan` to the destination: deletes first (so unique columns can move), then updates,
 * then inserts. Rows are read from the owner's transaction, so they match the diffed snapshot.
 */
export async function applyPlan(
  plan: DiffPlan,
  sides: { spec: TableSpec; owner: Tx; destination: Tx },
  options: ApplyOptions,
): Promise<void> {
  const { spec, owner, destination } = sides;
  const batch = options.batchRows ?? 1000;
  const done = { inserted: 0, updated: 0, deleted: 0 };
  const counts = planCounts(plan);
  const total = counts.inserts + counts.updates + (options.deleteMissing ? counts.deletes : 0);
  const report = () => options.onProgress?.({ ...done, total });
  if (options.deleteMissing) {
    for (const range of plan.deleteRanges) {
      await deleteRange(destination, spec, range.range);
      done.deleted += range.rows;
      report();
    }
    for (let i = 0; i < plan.deletes.length; i += batch) {
      const keys = plan.deletes.slice(i, i + batch);
      await deleteKeys(destination, spec, keys);
      done.deleted += keys.length;
      report();
    }
  }
  for (let i = 0; i < plan.updates.length; i += batch) {
    const rows = await fetchRows(owner, spec, plan.updates.slice(i, i + batch));
    await updateRows(destination, spec, rows);
    done.updated += rows.length;
    report();
  }
  for (let i = 0; i < plan.inserts.length; i += batch) {
    const rows = await fetchRows(owner, spec, plan.inserts.slice(i, i + batch));
    await insertRows(destination, spec, rows);
    done.inserted += rows.length;
    report();
  }
  for (const { range } of plan.insertRanges) {
    for await (const rows of rangeRows(owner, spec, range, batch)) {
      await insertRows(destination, spec, rows);
      done.inserted += rows.length;
      report();
    }
  }
}
