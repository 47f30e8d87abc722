/** @module Segmented diff: checksum key-ordered segments on both sides, descend where they differ. */
import type postgres from "postgres";
import type { TableSpec } from "./table_spec.ts";
import {
  jsonRangeCondition,
  type Key,
  keyBoundJson,
  keyJson,
  keyOrder,
  type KeyRange,
  Params,
  quoteIdentList,
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
  firstSegmentRows: 64,
  fanout: 4,
  leafRows: 16,
  segmentsPerStatement: 2000,
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
  /** Levels of bisection the diff needed. */
  levels: number;
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

const sameKey = (a: Key | null, b: Key | null) =>
  a !== null && b !== null && a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Append a range, merged with the previous one when they touch: an empty destination then
 * becomes a few long ranges streamed in full batches, not one small query per segment.
 */
function addRange(list: { range: KeyRange; rows: number }[], range: KeyRange, rows: number) {
  const last = list.at(-1);
  if (last && sameKey(last.range.hi, range.lo)) {
    last.range = { lo: last.range.lo, hi: range.hi };
    last.rows += rows;
  } else {
    list.push({ range, rows });
  }
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Run `inner` once per range and return its rows tagged with the range's index. Bounded ranges
 * go in one statement as a JSON parameter joined `LATERAL`, so each is an index range scan and
 * the SQL text stays small; the (at most two) ranges open at one end get their own statement,
 * since a `bound IS NULL OR ...` condition cannot use the index.
 */
async function eachRange<R>(
  tx: Tx,
  spec: TableSpec,
  ranges: { range: KeyRange; rows?: number }[],
  inner: (condition: string, rows: string) => string,
  per: number,
): Promise<(R & { i: number })[]> {
  const out: (R & { i: number })[] = [];
  const bounded: number[] = [];
  for (const [i, { range, rows }] of ranges.entries()) {
    if (range.lo && range.hi) {
      bounded.push(i);
      continue;
    }
    const params = new Params();
    const sql = `SELECT ${i} AS i, x.* FROM (${
      inner(rangeCondition(spec, range, params), String(rows ?? 0))
    }) AS x`;
    out.push(...await tx.unsafe<(R & { i: number })[]>(sql, params.values, { prepare: false }));
  }
  for (const chunk of chunks(bounded, per)) {
    const json = JSON.stringify(
      chunk.map((i) => [ranges[i].range.lo, ranges[i].range.hi, ranges[i].rows ?? 0, i]),
    );
    const sql = `SELECT (r.v->>3)::int AS i, x.*
      FROM json_array_elements($1::text::json) AS r(v)
      CROSS JOIN LATERAL (${inner(jsonRangeCondition(spec, "r.v"), "(r.v->>2)::int")}) AS x`;
    out.push(...await tx.unsafe<(R & { i: number })[]>(sql, [json], { prepare: false }));
  }
  return out;
}

/** Cut each pending range into segments of `segmentRows` owner rows, with their checksums. */
async function cutOnOwner(tx: Tx, spec: TableSpec, pending: Pending[], per: number) {
  type Row = { i: number; seg: string; n: string; s: string; first: string };
  const rows = await eachRange<Row>(
    tx,
    spec,
    pending.map((p) => ({ range: p.range, rows: Math.max(1, Math.ceil(p.segmentRows)) })),
    (condition, rows) =>
      `SELECT (rn - 1) / ${rows} AS seg, count(*)::text AS n, sum(h)::text AS s,
         max(first) AS first
       FROM (SELECT ${rowHash(spec)}::numeric AS h, row_number() OVER w AS rn,
               CASE WHEN (row_number() OVER w - 1) % ${rows} = 0 THEN ${
        keyBoundJson(spec)
      } END AS first
             FROM ${spec.sqlName} AS t WHERE ${condition}
             WINDOW w AS (ORDER BY ${keyOrder(spec)})) AS y
       GROUP BY 1`,
    per,
  );
  const byPart = new Map<number, Row[]>();
  for (const row of rows) {
    const list = byPart.get(row.i) ?? [];
    list.push(row);
    byPart.set(row.i, list);
  }
  return pending.flatMap((p, i): Segment[] => {
    const list = (byPart.get(i) ?? []).sort((a, b) => Number(a.seg) - Number(b.seg));
    if (list.length === 0) return [{ range: p.range, ownerRows: 0, ownerSum: "0" }];
    const firsts = list.map((r) => JSON.parse(r.first) as Key);
    return list.map((r, j) => ({
      range: {
        lo: j === 0 ? p.range.lo : firsts[j],
        hi: j === list.length - 1 ? p.range.hi : firsts[j + 1],
      },
      ownerRows: Number(r.n),
      ownerSum: r.s,
    }));
  });
}

/** Count and checksum each range at the destination. */
async function sumRanges(tx: Tx, spec: TableSpec, ranges: KeyRange[], per: number) {
  const rows = await eachRange<{ n: string; s: string }>(
    tx,
    spec,
    ranges.map((range) => ({ range })),
    (condition) =>
      `SELECT count(*)::text AS n, coalesce(sum(${rowHash(spec)}::numeric), 0)::text AS s
       FROM ${spec.sqlName} AS t WHERE ${condition}`,
    per,
  );
  const sums = new Array<{ rows: number; sum: string }>(ranges.length);
  for (const row of rows) sums[row.i] = { rows: Number(row.n), sum: row.s };
  return sums;
}

/** Key and row hash of every row in the ranges. */
async function rowHashes(tx: Tx, spec: TableSpec, ranges: KeyRange[], per: number) {
  const rows = await eachRange<{ k: string; h: string }>(
    tx,
    spec,
    ranges.map((range) => ({ range })),
    (condition) =>
      `SELECT ${keyJson(spec)} AS k, ${rowHash(spec)}::text AS h
       FROM ${spec.sqlName} AS t WHERE ${condition}`,
    per,
  );
  return new Map(rows.map((row) => [row.k, row.h]));
}

type Bucketed = { segment: Segment; theirs: { rows: number; sum: string } }[];

/** Run a bucketing query on both sides at once; it returns "bucket count sum,..." in one value. */
async function bucketBoth(owner: Tx, destination: Tx, sql: string, params: string[]) {
  return await Promise.all([owner, destination].map(async (tx) => {
    const [{ buckets }] = await tx.unsafe<{ buckets: string }[]>(sql, params, { prepare: false });
    const map = new Map<number, { rows: number; sum: string }>();
    for (const entry of buckets ? buckets.split(",") : []) {
      const [b, n, sum] = entry.split(" ");
      map.set(Number(b), { rows: Number(n), sum });
    }
    return map;
  }));
}

/** Pair up bucket `b` of both sides with its key range. */
function pairBuckets(
  count: number,
  rangeOf: (b: number) => KeyRange,
  mine: Map<number, { rows: number; sum: string }>,
  theirs: Map<number, { rows: number; sum: string }>,
): Bucketed {
  const empty = { rows: 0, sum: "0" };
  const out: Bucketed = [];
  for (let b = 0; b < count; b++) {
    const own = mine.get(b) ?? empty;
    out.push({
      segment: { range: rangeOf(b), ownerRows: own.rows, ownerSum: own.sum },
      theirs: theirs.get(b) ?? empty,
    });
  }
  return out;
}

const bucketSql = (spec: TableSpec, bucket: string) =>
  `SELECT coalesce(string_agg(b || ' ' || n || ' ' || s, ','), '') AS buckets
   FROM (SELECT ${bucket} AS b, count(*) AS n, sum(${rowHash(spec)}::numeric) AS s
         FROM ${spec.sqlName} AS t GROUP BY 1) AS x`;

const INTEGER_TYPES = new Set(["smallint", "integer", "bigint"]);
const INT64_SPAN = 2n ** 63n;

/**
 * First level for an integer key, in one scan per side and no key list on the wire: buckets of
 * equal key width between the smallest and largest key of both sides, about `firstSegmentRows`
 * owner rows each if keys are dense. Sparse or skewed keys only make some buckets larger, which
 * the next level cuts by owner row count. Undefined when the key span does not fit in bigint.
 */
async function bucketIntegerKeys(
  spec: TableSpec,
  owner: Tx,
  destination: Tx,
  options: SegmentOptions,
): Promise<Bucketed | undefined> {
  const key = quoteIdentList(spec.key);
  const [ends, theirEnds] = await Promise.all([owner, destination].map(async (tx) => {
    const [row] = await tx.unsafe<{ lo: string | null; hi: string | null; n: string }[]>(
      `SELECT min(${key})::text AS lo, max(${key})::text AS hi,
         (SELECT greatest(reltuples, 0)::bigint::text FROM pg_class
          WHERE oid = '${spec.sqlName.replaceAll("'", "''")}'::regclass) AS n
       FROM ${spec.sqlName} AS t`,
    );
    return row;
  }));
  const values = [ends.lo, ends.hi, theirEnds.lo, theirEnds.hi].filter((v) => v !== null)
    .map((v) => BigInt(v!));
  if (values.length === 0) return [];
  const lo = values.reduce((a, b) => (a < b ? a : b));
  const hi = values.reduce((a, b) => (a > b ? a : b));
  const span = hi - lo + 1n;
  if (span >= INT64_SPAN) return undefined;
  // reltuples is an estimate (or 0 before ANALYZE); it only sizes buckets.
  const rows = BigInt(Math.max(1, Number(ends.n)));
  const buckets = (rows + BigInt(options.firstSegmentRows) - 1n) /
    BigInt(options.firstSegmentRows);
  let width = (span + buckets - 1n) / (buckets > 0n ? buckets : 1n);
  if (width < 1n) width = 1n;
  const count = Number((span + width - 1n) / width);
  const [mine, theirs] = await bucketBoth(
    owner,
    destination,
    bucketSql(spec, `(${key}::bigint - $1::text::bigint) / $2::text::bigint`),
    [String(lo), String(width)],
  );
  return pairBuckets(
    count,
    (b) => ({
      lo: b === 0 ? null : [String(lo + BigInt(b) * width)],
      hi: b === count - 1 ? null : [String(lo + BigInt(b + 1) * width)],
    }),
    mine,
    theirs,
  );
}

/**
 * First level for any other single-column key: the owner lists every `firstSegmentRows`-th key
 * (an index-only scan), then both sides count and checksum the rows between consecutive keys at
 * once, each range an index range scan. The key list is sent once per side, not as pairs.
 * (`width_bucket` over such a list walks a text array linearly per row, so it is not used.)
 */
async function bucketByOwnerKeys(
  spec: TableSpec,
  owner: Tx,
  destination: Tx,
  options: SegmentOptions,
): Promise<Bucketed> {
  const [key] = spec.key;
  const rows = Math.max(2, Math.floor(options.firstSegmentRows));
  const [{ bounds }] = await owner.unsafe<{ bounds: string }[]>(
    `SELECT coalesce(json_agg(k ORDER BY rn), '[]')::text AS bounds
     FROM (SELECT (${quoteIdentList([key])})::text AS k,
             row_number() OVER (ORDER BY ${keyOrder(spec)}) AS rn
           FROM ${spec.sqlName} AS t) AS x
     WHERE rn % ${rows} = 1 AND rn > 1`,
  );
  const keys = (JSON.parse(bounds) as string[]).map((k) => [k]);
  const column = keyOrder(spec);
  const sum = `count(*) AS n, coalesce(sum(${rowHash(spec)}::numeric), 0) AS s`;
  const at = (i: number) => `(($1::text::json)->>${i})::${key.type}`;
  const parts = keys.length === 0
    ? [`SELECT 0 AS i, ${sum} FROM ${spec.sqlName} AS t WHERE $1::text IS NOT NULL`]
    : [
      `SELECT 0 AS i, ${sum} FROM ${spec.sqlName} AS t WHERE ${column} < ${at(0)}`,
      `SELECT ${keys.length}, ${sum} FROM ${spec.sqlName} AS t
       WHERE ${column} >= ${at(keys.length - 1)}`,
      `SELECT r.i, x.n, x.s
       FROM (SELECT i, b #>> '{}' AS lo, lead(b #>> '{}') OVER (ORDER BY i) AS hi
             FROM json_array_elements($1::text::json) WITH ORDINALITY AS e(b, i)) AS r
       CROSS JOIN LATERAL (SELECT ${sum} FROM ${spec.sqlName} AS t
         WHERE ${column} >= (r.lo)::${key.type} AND ${column} < (r.hi)::${key.type}) AS x
       WHERE r.hi IS NOT NULL`,
    ];
  const [mine, theirs] = await bucketBoth(
    owner,
    destination,
    `SELECT coalesce(string_agg(i || ' ' || n || ' ' || s, ','), '') AS buckets
     FROM (${parts.map((p) => `(${p})`).join(" UNION ALL ")}) AS y`,
    [bounds],
  );
  return pairBuckets(
    keys.length + 1,
    (b) => ({
      lo: b === 0 ? null : keys[b - 1],
      hi: b === keys.length ? null : keys[b],
    }),
    mine,
    theirs,
  );
}

/**
 * Split a bounded integer range into about `fanout` parts of equal key width; undefined for
 * other keys or open ranges, which the owner cuts by row count instead.
 */
function splitIntegerRange(spec: TableSpec, range: KeyRange, fanout: number) {
  if (spec.key.length !== 1 || !INTEGER_TYPES.has(spec.key[0].type)) return undefined;
  if (!range.lo || !range.hi) return undefined;
  const lo = BigInt(range.lo[0]);
  const hi = BigInt(range.hi[0]);
  const width = (hi - lo + BigInt(fanout) - 1n) / BigInt(fanout);
  const parts: KeyRange[] = [];
  for (let at = lo; at < hi; at += width > 0n ? width : 1n) {
    const end = at + width < hi ? at + width : hi;
    parts.push({ lo: [String(at)], hi: [String(end)] });
  }
  return parts;
}

/**
 * Cut pending ranges and checksum the cuts on both sides. Bounded integer ranges are cut by key
 * width and summed on both sides at once; the rest are cut by the owner's row count first.
 */
async function cutAndSum(
  spec: TableSpec,
  owner: Tx,
  destination: Tx,
  pending: Pending[],
  options: SegmentOptions,
): Promise<Bucketed> {
  const per = options.segmentsPerStatement;
  const arithmetic: KeyRange[] = [];
  const byOwner: Pending[] = [];
  for (const p of pending) {
    const parts = splitIntegerRange(spec, p.range, options.fanout);
    if (parts) arithmetic.push(...parts);
    else byOwner.push(p);
  }
  const out: Bucketed = [];
  if (arithmetic.length > 0) {
    const [mine, theirs] = await Promise.all([
      sumRanges(owner, spec, arithmetic, per),
      sumRanges(destination, spec, arithmetic, per),
    ]);
    arithmetic.forEach((range, i) =>
      out.push({
        segment: { range, ownerRows: mine[i].rows, ownerSum: mine[i].sum },
        theirs: theirs[i],
      })
    );
  }
  if (byOwner.length > 0) {
    const segments = await cutOnOwner(owner, spec, byOwner, per);
    const sums = await sumRanges(destination, spec, segments.map((s) => s.range), per);
    segments.forEach((segment, i) => out.push({ segment, theirs: sums[i] }));
  }
  return out;
}

/**
 * Compare the owner's table with the destination's and return what differs. Both transactions
 * should be `REPEATABLE READ` so every level sees the same snapshot.
 */
export async function diffTable(
  spec: TableSpec,
  sides: { owner: Tx; destination: Tx },
  options: SegmentOptions = DEFAULT_SEGMENTS,
): Promise<DiffPlan> {
  const { owner, destination } = sides;
  const plan: DiffPlan = {
    inserts: [],
    updates: [],
    deletes: [],
    insertRanges: [],
    deleteRanges: [],
    ownerRows: 0,
    destinationRows: 0,
    levels: 0,
  };
  const per = options.segmentsPerStatement;
  const whole: Pending = { range: { lo: null, hi: null }, segmentRows: options.firstSegmentRows };
  const single = spec.key.length === 1;
  let level =
    (single && INTEGER_TYPES.has(spec.key[0].type)
      ? await bucketIntegerKeys(spec, owner, destination, options)
      : undefined) ??
      (single
        ? await bucketByOwnerKeys(spec, owner, destination, options)
        : await cutAndSum(spec, owner, destination, [whole], options));
  plan.ownerRows = level.reduce((n, l) => n + l.segment.ownerRows, 0);
  plan.destinationRows = level.reduce((n, l) => n + l.theirs.rows, 0);
  while (level.length > 0) {
    plan.levels++;
    const next: Pending[] = [];
    const leaves: KeyRange[] = [];
    for (const { segment, theirs } of level) {
      if (segment.ownerRows === theirs.rows && segment.ownerSum === theirs.sum) continue;
      if (theirs.rows === 0) {
        addRange(plan.insertRanges, segment.range, segment.ownerRows);
      } else if (segment.ownerRows === 0) {
        addRange(plan.deleteRanges, segment.range, theirs.rows);
      } else if (segment.ownerRows <= options.leafRows) {
        leaves.push(segment.range);
      } else {
        next.push({
          range: segment.range,
          segmentRows: Math.ceil(segment.ownerRows / options.fanout),
        });
      }
    }
    if (leaves.length > 0) {
      const [mine, theirs] = await Promise.all([
        rowHashes(owner, spec, leaves, per),
        rowHashes(destination, spec, leaves, per),
      ]);
      for (const [key, hash] of mine) {
        const other = theirs.get(key);
        if (other === undefined) plan.inserts.push(JSON.parse(key));
        else if (other !== hash) plan.updates.push(JSON.parse(key));
      }
      for (const key of theirs.keys()) {
        if (!mine.has(key)) plan.deletes.push(JSON.parse(key));
      }
    }
    level = next.length > 0 ? await cutAndSum(spec, owner, destination, next, options) : [];
  }
  return plan;
}
