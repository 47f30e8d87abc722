/** @module Segmented diff: checksum key-ordered segments on both sides, descend where they differ. */
import type postgres from "postgres";
import type { TableSpec } from "./table_spec.ts";
import {
  type Key,
  keyJson,
  keyOrder,
  type KeyRange,
  Params,
  rangeCondition,
  rowHash,
} from "./sql_fragments.ts";

/** How the diff cuts the table; the defaults suit tables from a few rows to millions. */
export interface SegmentOptions {
  /** Rows per segment at the first level (cut by the owner's key order). */
  firstSegmentRows: number;
  /** Number of sub-segments a differing segment is cut into. */
  fanout: number;
  /** A differing segment with at most this many owner rows is compared row by row. */
  leafRows: number;
  /** Segments per statement, to bound statement size. */
  segmentsPerStatement: number;
}

/** Default segment sizes, chosen with `deno task bench:sync` (see sync/README.md). */
export const DEFAULT_SEGMENTS: SegmentOptions = {
  firstSegmentRows: 256,
  fanout: 16,
  leafRows: 16,
  segmentsPerStatement: 256,
};

/** Work needed to bring one destination table in line, with counts for the summary. */
export interface DiffPlan {
  /** Keys to copy from the owner. */
  inserts: Key[];
  /** Keys present on both sides whose row hash differs. */
  updates: Key[];
  /** Keys present only at the destination. */
  deletes: Key[];
  /** Ranges empty at the destination: every owner row in them is inserted, streamed in batches. */
  insertRanges: { range: KeyRange; rows: number }[];
  /** Ranges empty at the owner: every destination row in them is extra. */
  deleteRanges: { range: KeyRange; rows: number }[];
  /** Rows at the owner and at the destination when the diff ran. */
  ownerRows: number;
  destinationRows: number;
  /** Statements issued per side, for the log. */
  statements: number;
}

/** Total inserts, updates and deletes of a plan. */
export function planCounts(plan: DiffPlan): { inserts: number; updates: number; deletes: number } {
  const sum = (ranges: { rows: number }[]) => ranges.reduce((n, r) => n + r.rows, 0);
  return {
    inserts: plan.inserts.length + sum(plan.insertRanges),
    updates: plan.updates.length,
    deletes: plan.deletes.length + sum(plan.deleteRanges),
  };
}

interface Segment {
  range: KeyRange;
  ownerRows: number;
  ownerSum: string;
}

interface Pending {
  range: KeyRange;
  segmentRows: number;
}

type Tx = postgres.TransactionSql;

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Cut each pending range into segments of `segmentRows` owner rows, with their checksums. */
async function cutOnOwner(tx: Tx, spec: TableSpec, pending: Pending[], per: number) {
  const result: Segment[][] = pending.map(() => []);
  let statements = 0;
  for (const [chunkIndex, chunk] of chunks(pending, per).entries()) {
    const params = new Params();
    const parts = chunk.map((p, i) => {
      const rows = Math.max(1, Math.floor(p.segmentRows));
      return `(SELECT ${i} AS part, (rn - 1) / ${rows} AS seg, count(*)::text AS n,
          sum(h)::text AS s, max(first) AS first
        FROM (SELECT ${rowHash(spec)}::numeric AS h,
            row_number() OVER (ORDER BY ${keyOrder(spec)}) AS rn,
            CASE WHEN (row_number() OVER (ORDER BY ${keyOrder(spec)}) - 1) % ${rows} = 0
              THEN ${keyJson(spec)} END AS first
          FROM ${spec.sqlName} WHERE ${rangeCondition(spec, p.range, params)}) x
        GROUP BY 2)`;
    });
    type Row = { part: number; seg: string; n: string; s: string; first: string };
    const rows: Row[] = await tx.unsafe<Row[]>(
      parts.join(" UNION ALL "),
      params.values,
      { prepare: false },
    );
    statements++;
    const byPart = new Map<number, Row[]>();
    for (const row of rows) {
      const list = byPart.get(row.part) ?? [];
      list.push(row);
      byPart.set(row.part, list);
    }
    for (const [i, p] of chunk.entries()) {
      const list = (byPart.get(i) ?? []).sort((a, b) => Number(a.seg) - Number(b.seg));
      const firsts = list.map((r) => JSON.parse(r.first) as Key);
      result[chunkIndex * per + i] = list.map((r, j) => ({
        range: {
          lo: j === 0 ? p.range.lo : firsts[j],
          hi: j === list.length - 1 ? p.range.hi : firsts[j + 1],
        },
        ownerRows: Number(r.n),
        ownerSum: r.s,
      }));
      if (list.length === 0) {
        result[chunkIndex * per + i] = [{ range: p.range, ownerRows: 0, ownerSum: "0" }];
      }
    }
  }
  return { segments: result.flat(), statements };
}

/** Count and checksum each range at the destination. */
async function sumRanges(tx: Tx, spec: TableSpec, ranges: KeyRange[], per: number) {
  const out: { rows: number; sum: string }[] = [];
  let statements = 0;
  for (const chunk of chunks(ranges, per)) {
    const params = new Params();
    const parts = chunk.map((range, i) =>
      `(SELECT ${i} AS part, count(*)::text AS n, coalesce(sum(${
        rowHash(spec)
      }::numeric), 0)::text AS s
        FROM ${spec.sqlName} WHERE ${rangeCondition(spec, range, params)})`
    );
    const rows = await tx.unsafe<{ part: number; n: string; s: string }[]>(
      parts.join(" UNION ALL "),
      params.values,
      { prepare: false },
    );
    statements++;
    const sorted = rows.sort((a, b) => a.part - b.part);
    for (const row of sorted) out.push({ rows: Number(row.n), sum: row.s });
  }
  return { sums: out, statements };
}

/** Key and row hash of every row in the ranges. */
async function rowHashes(tx: Tx, spec: TableSpec, ranges: KeyRange[], per: number) {
  const out = new Map<string, string>();
  let statements = 0;
  for (const chunk of chunks(ranges, per)) {
    const params = new Params();
    const parts = chunk.map((range) =>
      `(SELECT ${keyJson(spec)} AS k, ${rowHash(spec)}::text AS h
        FROM ${spec.sqlName} WHERE ${rangeCondition(spec, range, params)})`
    );
    const rows = await tx.unsafe<{ k: string; h: string }[]>(
      parts.join(" UNION ALL "),
      params.values,
      { prepare: false },
    );
    statements++;
    for (const row of rows) out.set(row.k, row.h);
  }
  return { hashes: out, statements };
}

/**
 * Compare the owner's table with the destination's and return what differs. Both transactions
 * should be `REPEATABLE READ` so every level sees the same snapshot.
 */
export async function diffTable(
  spec: TableSpec,
  owner: Tx,
  destination: Tx,
  options: SegmentOptions = DEFAULT_SEGMENTS,
): Promise<DiffPlan> {
  const plan: DiffPlan = {
    inserts: [],
    updates: [],
    deletes: [],
    insertRanges: [],
    deleteRanges: [],
    ownerRows: 0,
    destinationRows: 0,
    statements: 0,
  };
  const per = options.segmentsPerStatement;
  let pending: Pending[] = [{
    range: { lo: null, hi: null },
    segmentRows: options.firstSegmentRows,
  }];
  let level = 0;
  while (pending.length > 0) {
    // One level: the owner cuts the pending ranges, the destination checksums the same cuts.
    const { segments, statements } = await cutOnOwner(owner, spec, pending, per);
    const { sums } = await sumRanges(destination, spec, segments.map((s) => s.range), per);
    plan.statements += statements;
    if (level === 0) {
      plan.ownerRows = segments.reduce((n, s) => n + s.ownerRows, 0);
      plan.destinationRows = sums.reduce((n, s) => n + s.rows, 0);
    }
    const next: Pending[] = [];
    const leaves: KeyRange[] = [];
    segments.forEach((segment, i) => {
      const theirs = sums[i];
      if (segment.ownerRows === theirs.rows && segment.ownerSum === theirs.sum) return;
      if (theirs.rows === 0) {
        plan.insertRanges.push({ range: segment.range, rows: segment.ownerRows });
      } else if (segment.ownerRows === 0) {
        plan.deleteRanges.push({ range: segment.range, rows: theirs.rows });
      } else if (segment.ownerRows <= options.leafRows) {
        leaves.push(segment.range);
      } else {
        next.push({
          range: segment.range,
          segmentRows: Math.ceil(segment.ownerRows / options.fanout),
        });
      }
    });
    if (leaves.length > 0) {
      const [mine, theirs] = await Promise.all([
        rowHashes(owner, spec, leaves, per),
        rowHashes(destination, spec, leaves, per),
      ]);
      plan.statements += mine.statements;
      for (const [key, hash] of mine.hashes) {
        const other = theirs.hashes.get(key);
        if (other === undefined) plan.inserts.push(JSON.parse(key));
        else if (other !== hash) plan.updates.push(JSON.parse(key));
      }
      for (const key of theirs.hashes.keys()) {
        if (!mine.hashes.has(key)) plan.deletes.push(JSON.parse(key));
      }
    }
    pending = next;
    level++;
  }
  return plan;
}
