/** @module Applies a diff plan to the destination in bounded batches, values moved as text. */
import type postgres from "postgres";
import { type DiffPlan, planCounts } from "./diff.ts";
import { describeError } from "./errors.ts";
import { quoteIdent, type TableSpec } from "./table_spec.ts";
import {
  afterCondition,
  jsonRangeCondition,
  type Key,
  keyBoundJson,
  keyJoin,
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

/** Options for {@linkcode PlanWriter}. */
export interface ApplyOptions {
  /** Rows per statement, at most. */
  batchRows?: number;
  /** Bytes of row text per statement, about (a row more may cross it); default 8 MiB. */
  batchBytes?: number;
  /** Apply `deletes` and `deleteRanges`; otherwise they are left in place (and reported). */
  deleteMissing: boolean;
  onProgress?: ProgressListener;
}

/** Cast element `i` of JSON array `alias` to the column's type; the server parses the text. */
function castColumns(spec: TableSpec, alias: string) {
  return spec.columns.map((c, i) => `(${alias}->>${i})::${c.type}`);
}

const BATCH_BYTES = 8 * 1024 * 1024;

/** Rows in a table's first page, before its row size is known. */
const FIRST_PAGE_ROWS = 100;

/**
 * How many rows to ask for next: at most `rows`, and about `bytes` of row text at the size of
 * the rows seen last. The server cuts each page at `bytes` too; this keeps it from building
 * text it will not send.
 */
class PageSize {
  #next: number;
  constructor(readonly rows: number, readonly bytes: number) {
    this.#next = Math.min(rows, FIRST_PAGE_ROWS);
  }
  get next(): number {
    return this.#next;
  }
  /** Records a page read: `rows` rows of `bytes` bytes. */
  saw(rows: number, bytes: number) {
    const perRow = Math.max(1, bytes / Math.max(1, rows));
    this.#next = Math.max(1, Math.min(this.rows, Math.floor(this.bytes / perRow)));
  }
}

/**
 * Keeps the rows of `page` (a query with columns `r`, the row text, and `n`, its place) whose
 * text starts within the first `budget` bytes, in order, and says up to which byte they run.
 * One row always fits; a batch of large rows no longer becomes one string too long for the
 * client (1,000 rows of 0.6 MB each failed every run).
 */
function withinBudget(page: string, params: Params, budget: number): string {
  return `SELECT w.* FROM (
       SELECT p.*, sum(octet_length(p.r)) OVER (ORDER BY p.n ROWS UNBOUNDED PRECEDING) AS upto
       FROM (${page}) AS p) AS w
     WHERE w.upto - octet_length(w.r) < (${params.add(String(budget))})::bigint
     ORDER BY w.n`;
}

/**
 * Owner rows for the first of `keys`, in their order, whose text fits `budget` bytes (one row
 * at least), each as a JSON array of column text.
 */
async function fetchRows(
  owner: Tx,
  spec: TableSpec,
  keys: Key[],
  budget: number,
): Promise<{ rows: string[][]; bytes: number }> {
  const params = new Params();
  const found = await owner.unsafe<{ n: string; r: string; upto: string }[]>(
    withinBudget(
      `SELECT j.n, ${rowJson(spec, "t.")} AS r
       FROM json_array_elements(${
        params.add(JSON.stringify(keys))
      }::json) WITH ORDINALITY AS j(k, n)
       JOIN ${spec.sqlName} AS t ON ${keyJoin(spec, "j.k", undefined, "t.")}`,
      params,
      budget,
    ),
    params.values,
    { prepare: false },
  );
  const bytes = Number(found.at(-1)?.upto ?? 0);
  // Each key the diff found must find its one row, or the report counts writes never made: a
  // citext key lower-cased in its column's collation met two owner rows, or none. Rows come in
  // key order, so a key with none or two shows as a gap or a repeat; keys past the last row
  // read are judged by a later call, unless the budget did not cut the page.
  const ordered = found.every((row, i) => Number(row.n) === i + 1);
  if (!ordered || (found.length < keys.length && bytes < budget)) {
    throw new Error(
      `Cannot sync table "${spec.name}": ${keys.length} keys read back ${
        ordered ? found.length : "other"
      } rows at the owner (a key whose text form does not name exactly one row)`,
    );
  }
  return { rows: found.map((row) => JSON.parse(row.r)), bytes };
}

/**
 * Inserts `rows` and returns the keys whose presence the statement's row count cannot vouch for:
 * all of them when the count falls short (a BEFORE INSERT trigger that routes rows into an
 * inheritance child reports 0 but stored them) or the table has an INSERT rule (an INSTEAD rule
 * reports its own count but stores nothing here). {@linkcode checkInserted} then counts them.
 */
async function insertRows(
  destination: Tx,
  spec: TableSpec,
  rows: string[][],
  insertRule: () => Promise<boolean>,
): Promise<string[][]> {
  if (rows.length === 0) return [];
  const result = await destination.unsafe(
    `INSERT INTO ${spec.sqlName} (${quoteIdentList(spec.columns)})${
      spec.columns.some((c) => c.identityAlways) ? " OVERRIDING SYSTEM VALUE" : ""
    }
     SELECT ${
      castColumns(spec, "j.r").join(", ")
    } FROM json_array_elements($1::text::json) AS j(r)`,
    [JSON.stringify(rows)],
    { prepare: false },
  );
  if (result.count === rows.length && !(await insertRule())) return [];
  const offsets = spec.key.map((k) => spec.columns.findIndex((c) => c.name === k.name));
  return rows.map((row) => offsets.map((i) => row[i]));
}

/** Keys per presence count: one scan of an unindexed inheritance child counts this many. */
const PRESENCE_CHUNK = 50_000;

/** Fails the table when fewer of the inserted `keys` are in it than were inserted. */
async function checkInserted(destination: Tx, spec: TableSpec, keys: string[][]) {
  let present = 0;
  for (let i = 0; i < keys.length; i += PRESENCE_CHUNK) {
    const [{ n }] = await destination.unsafe<{ n: number }[]>(
      `SELECT count(*)::int AS n FROM ${spec.sqlName} AS t, json_array_elements($1::text::json) AS j(k)
       WHERE ${keyJoin(spec, "j.k", undefined, "t.")}`,
      [JSON.stringify(keys.slice(i, i + PRESENCE_CHUNK))],
      { prepare: false },
    );
    present += n;
  }
  if (present !== keys.length) {
    throw new Error(
      `Cannot sync table "${spec.name}": ${keys.length} rows to insert, ${present} there afterwards (a trigger or rule at the destination skipped the rest)`,
    );
  }
}

/** Enabled user row triggers that run BEFORE an INSERT or UPDATE, and may change what is stored. */
const REWRITING_TRIGGER = `
  (SELECT format('trigger %I', t.tgname) FROM pg_trigger t
   WHERE t.tgrelid = $1::text::regclass AND NOT t.tgisinternal AND t.tgenabled <> 'D'
     AND t.tgtype & 1 = 1 AND t.tgtype & 2 = 2 AND t.tgtype & (4 | 16) <> 0
   ORDER BY 1 LIMIT 1)`;

/**
 * Fails the table when a written row reads back other than the owner's values (a BEFORE trigger
 * at the destination rewrote them): the next run would find it changed and write it again, and
 * report it applied, forever. Names the first such column.
 */
async function checkWritten(
  destination: Tx,
  spec: TableSpec,
  rows: string[][],
  why: string,
  only: boolean,
) {
  if (rows.length === 0) return;
  const casts = castColumns(spec, "j.r");
  const offsets = spec.key.map((k) => spec.columns.findIndex((c) => c.name === k.name));
  const differs = spec.columns.map((c, i) =>
    `CASE WHEN t.${quoteIdentList([c])}::text IS DISTINCT FROM (${casts[i]})::text THEN ${
      quoteLiteral(c.name)
    } END`
  );
  const [row] = await destination.unsafe<{ column: string | null }[]>(
    `SELECT coalesce(${differs.join(", ")}) AS column
     FROM ${only ? "ONLY " : ""}${spec.sqlName} AS t, json_array_elements($1::text::json) AS j(r)
     WHERE ${keyJoin(spec, "j.r", offsets, "t.")} AND coalesce(${differs.join(", ")}) IS NOT NULL
     LIMIT 1`,
    [JSON.stringify(rows)],
    { prepare: false },
  );
  if (row) {
    throw new Error(
      `Cannot sync table "${spec.name}": column "${row.column}" reads back other than the owner's value after the write (${why} at the destination changes it), so every run would write it again`,
    );
  }
}

function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
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
  const result = await destination.unsafe(
    `UPDATE ${spec.sqlName} AS t SET ${assignments.join(", ")}
     FROM json_array_elements($1::text::json) AS j(r)
     WHERE ${keyJoin(spec, "j.r", offsets, "t.")}`,
    [JSON.stringify(rows)],
    { prepare: false },
  );
  // Every row the plan updates must be updated: a cascade or a writer since the diff may have removed
  // it, or a BEFORE UPDATE trigger skipped it (the count leaves those out).
  if (result.count !== rows.length) {
    throw new Error(
      `Cannot sync table "${spec.name}": ${rows.length} rows to update, ${result.count} found`,
    );
  }
}

/**
 * Fail when rows a delete should have removed are still there: a BEFORE DELETE trigger that
 * returns NULL (a soft delete) or a rule kept them. Fewer deleted than planned is fine when the
 * rest are gone too, removed by a cascade from an earlier delete of this sync (a tree).
 */
async function checkDeleted(
  destination: Tx,
  spec: TableSpec,
  counts: { planned: number; deleted: number },
  match: { from: string; params: string[] },
) {
  if (counts.deleted === counts.planned) return;
  const [{ n }] = await destination.unsafe<{ n: number }[]>(
    `SELECT count(*)::int AS n FROM ${match.from}`,
    match.params,
    { prepare: false },
  );
  if (n === 0) return;
  throw new Error(
    `Cannot sync table "${spec.name}": ${counts.planned} rows to delete, ${counts.deleted} deleted and ${n} still there (a trigger or rule at the destination kept them)`,
  );
}

/** A foreign key to this table whose ON DELETE changes the referencing rows. */
interface CascadingKey {
  name: string;
  /** The referencing table, as `regclass` prints it (quoted where needed). */
  child: string;
  /** The referenced table: this one, or a table of its inheritance tree. */
  parent: string;
  /** The referencing table is this table (or in its inheritance tree): a self-reference. */
  within: boolean;
  /** The referencing table is partitioned: its rows are its partitions'. */
  childPartitioned: boolean;
  /** The referenced table is partitioned. */
  parentPartitioned: boolean;
  childColumns: string[];
  parentColumns: string[];
  /** Each parent column's collation, quoted, or "" (not collatable): a child's may differ. */
  parentCollations: string[];
  action: string;
}

/**
 * Foreign keys that reference this table with ON DELETE CASCADE, SET NULL or SET DEFAULT: from
 * other tables, a delete here would change rows there, which that table's own limits
 * (`max_delete_ratio`, `delete_missing` off) or its absence from the config say the sync must not
 * touch; from this table itself, rows the owner still has (through a column the sync excludes).
 */
async function cascadingKeys(destination: Tx, spec: TableSpec): Promise<CascadingKey[]> {
  return await destination.unsafe<CascadingKey[]>(
    `SELECT c.conname::text AS name, c.conrelid::regclass::text AS child,
            c.confrelid::regclass::text AS parent,
            (SELECT relkind = 'p' FROM pg_class WHERE oid = c.conrelid) AS "childPartitioned",
            (SELECT relkind = 'p' FROM pg_class WHERE oid = c.confrelid) AS "parentPartitioned",
            c.confdeltype AS action, c.conrelid IN ${TABLE_TREE} AS within,
            to_json(ARRAY(SELECT quote_ident(a.attname::text) FROM unnest(c.conkey) WITH ORDINALITY AS k(n, o)
                  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o))
              AS "childColumns",
            to_json(ARRAY(SELECT quote_ident(a.attname::text) FROM unnest(c.confkey) WITH ORDINALITY AS k(n, o)
                  JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o))
              AS "parentColumns",
            to_json(ARRAY(SELECT coalesce(quote_ident(ns.nspname::text) || '.' || quote_ident(co.collname::text), '')
                  FROM unnest(c.confkey) WITH ORDINALITY AS k(n, o)
                  JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                  LEFT JOIN pg_collation co ON co.oid = a.attcollation
                  LEFT JOIN pg_namespace ns ON ns.oid = co.collnamespace ORDER BY k.o))
              AS "parentCollations"
     FROM pg_constraint c
     WHERE c.contype = 'f' AND c.confrelid IN ${TABLE_TREE} AND c.confdeltype IN ('c', 'n', 'd')
     ORDER BY c.conname`,
    [spec.sqlName],
    { prepare: false },
  );
}

function deleteAction(key: CascadingKey): string {
  return key.action === "c" ? "CASCADE" : key.action === "n" ? "SET NULL" : "SET DEFAULT";
}

/**
 * Refuses the plan's key deletes unless each names exactly one destination row, before any is
 * made: a key whose text form matches no row (a `citext` key lower-cased in a column collation
 * other than the database's) was deleted "successfully" every run, the row still there. Checked
 * for the whole plan at once, since a cascade of this sync may take a later batch's rows first.
 */
async function refuseUnmatchedDeletes(destination: Tx, spec: TableSpec, keys: Key[]) {
  if (keys.length === 0) return;
  const [{ n }] = await destination.unsafe<{ n: number }[]>(
    `SELECT count(*)::int AS n FROM ${spec.sqlName} AS t, json_array_elements($1::text::json) AS j(k)
     WHERE ${keyJoin(spec, "j.k", undefined, "t.")}`,
    [JSON.stringify(keys)],
    { prepare: false },
  );
  if (n === keys.length) return;
  throw new Error(
    `Cannot sync table "${spec.name}": ${keys.length} keys to delete name ${n} rows at the destination (a key whose text form does not name exactly one row)`,
  );
}

/**
 * Refuses the plan's deletes when, through a foreign key with ON DELETE CASCADE, SET NULL or SET
 * DEFAULT, they would change rows of another table (the sync writes only the tables it syncs,
 * within their own limits) or rows of this one it does not delete (rows the owner still has,
 * referencing a deleted row through a column the sync excludes: unchecked, the cascade removed
 * them and the run reported one delete). Judged once for the whole plan, before any delete: a
 * subtree deleted over several batches passes, and no batch can cascade into what a later
 * batch's check would have refused. Children deleted by their own sync earlier in this run
 * (deletes go children first) are gone already and count nothing.
 */
async function refuseCascades(
  destination: Tx,
  spec: TableSpec,
  keys: CascadingKey[],
  plan: { deletes: Key[]; deleteRanges: Array<{ range: KeyRange }> },
) {
  // Ranges with both ends travel as one JSON parameter joined to the table, so each is an index
  // range scan: an OR of 4,000 ranges per statement tested every row against each (on PGlite,
  // 20,000 ranges over 80,000 rows of a self-referencing table took about 90 s, now 0.2 s).
  // Only a plan's first and last range can be open-ended.
  const bounded = plan.deleteRanges.flatMap(({ range }) =>
    range.lo && range.hi ? [[range.lo, range.hi]] : []
  );
  const open = plan.deleteRanges.flatMap(({ range }) => range.lo && range.hi ? [] : [range]);
  const keyColumns = spec.key.map((c) => quoteIdent(c.name));
  for (const key of keys) {
    const params = new Params();
    const deletes = params.add(JSON.stringify(plan.deletes));
    const ranges = params.add(JSON.stringify(bounded));
    /** The `columns` of the rows of `table` the plan deletes. */
    const planned = (table: string, columns: string[]) => {
      const pick = columns.map((c) => `t.${c}`).join(", ");
      return [
        `SELECT ${pick} FROM json_array_elements(${deletes}::json) AS j(k)
         JOIN ${table} AS t ON ${keyJoin(spec, "j.k", undefined, "t.")}`,
        `SELECT ${pick} FROM json_array_elements(${ranges}::json) AS r(b)
         JOIN ${table} AS t ON ${jsonRangeCondition(spec, "r.b", "t.")}`,
        ...open.map((range) =>
          `SELECT ${pick} FROM ${table} AS t WHERE ${rangeCondition(spec, range, params, "t.")}`
        ),
      ].join(" UNION ALL ");
    };
    // ONLY: a foreign key binds the rows of the tables it names, not of their inheritance
    // children; but a partitioned table's rows are its partitions', which ONLY would miss.
    const parent = `${key.parentPartitioned ? "" : "ONLY "}${key.parent}`;
    const child = `${key.childPartitioned ? "" : "ONLY "}${key.child}`;
    // Within the table, a referencing row the plan deletes too is no loss (a subtree). An anti
    // join: `NOT IN` a large set was tested row by row (79 s for 20,000 ranges on PGlite).
    const stays = key.within
      ? ` AND NOT EXISTS (SELECT 1 FROM (${planned(child, keyColumns)}) AS g(${
        keyColumns.map((_, i) => `k${i}`).join(", ")
      }) WHERE ${keyColumns.map((c, i) => `g.k${i} = ch.${c}`).join(" AND ")})`
      : "";
    const [{ n }] = await destination.unsafe<{ n: number }[]>(
      `SELECT count(*)::int AS n FROM ${child} AS ch
       WHERE (${
        key.childColumns.map((c, i) => {
          // A child column of another collation than its parent's (a foreign key allows it) is
          // compared in the parent's: implicit collations that differ make `IN` fail.
          const collation = key.parentCollations[i];
          return collation ? `ch.${c} COLLATE ${collation}` : `ch.${c}`;
        }).join(", ")
      })
         IN (${planned(parent, key.parentColumns)})${stays}`,
      params.values,
      { prepare: false },
    );
    if (n === 0) continue;
    const action = `foreign key ${key.name} (ON DELETE ${deleteAction(key)})`;
    throw new Error(
      key.within
        ? `Cannot sync table "${spec.name}": its deletes would change ${n} of its own rows that stay, through ${action}; clear those references at the destination first`
        : `Cannot sync table "${spec.name}": its deletes would change ${n} rows of ${key.child} through ${action}, which the sync does not write; delete them there first (list ${key.child} with delete_missing in the config, within its max_delete_ratio)`,
    );
  }
}

async function deleteKeys(
  destination: Tx,
  spec: TableSpec,
  keys: Key[],
) {
  const params = [JSON.stringify(keys)];
  const join = keyJoin(spec, "j.k", undefined, "t.");
  const result = await destination.unsafe(
    `DELETE FROM ${spec.sqlName} AS t USING json_array_elements($1::text::json) AS j(k)
     WHERE ${join}`,
    params,
    { prepare: false },
  );
  await checkDeleted(destination, spec, { planned: keys.length, deleted: result.count }, {
    from: `${spec.sqlName} AS t, json_array_elements($1::text::json) AS j(k) WHERE ${join}`,
    params,
  });
}

async function deleteRange(
  destination: Tx,
  spec: TableSpec,
  range: KeyRange,
  rows: number,
) {
  const params = new Params();
  const where = rangeCondition(spec, range, params, "t.");
  const result = await destination.unsafe(
    `DELETE FROM ${spec.sqlName} AS t WHERE ${where}`,
    params.values,
    { prepare: false },
  );
  await checkDeleted(destination, spec, { planned: rows, deleted: result.count }, {
    from: `${spec.sqlName} AS t WHERE ${where}`,
    params: params.values,
  });
}

/** Stream the owner rows of `keys`, in their order, a page at a time. */
async function* keyedRows(owner: Tx, spec: TableSpec, keys: Key[], pages: PageSize) {
  for (let i = 0; i < keys.length;) {
    const { rows, bytes } = await fetchRows(
      owner,
      spec,
      keys.slice(i, i + pages.next),
      pages.bytes,
    );
    pages.saw(rows.length, bytes);
    i += rows.length;
    yield rows;
  }
}

/** Stream every owner row of `range` in key order, a page at a time. */
async function* rangeRows(owner: Tx, spec: TableSpec, range: KeyRange, pages: PageSize) {
  let after: Key | null = null;
  while (true) {
    const params = new Params();
    // Every column through the table's alias: a bare `ORDER BY` name is an output column first,
    // and a key column named `k` sorted the page by its JSON text (211 of 300 rows arrived).
    const where = [rangeCondition(spec, range, params, "t.")];
    if (after) where.push(afterCondition(spec, after, params, "t."));
    const limit = pages.next;
    const found = await owner.unsafe<{ n: string; k: string; r: string; upto: string }[]>(
      withinBudget(
        `SELECT row_number() OVER (ORDER BY ${keyOrder(spec, "t.")}) AS n,
                ${keyBoundJson(spec, "t.")} AS k, ${rowJson(spec, "t.")} AS r
         FROM ${spec.sqlName} AS t WHERE ${where.join(" AND ")} ORDER BY ${keyOrder(spec, "t.")}
         LIMIT ${limit}`,
        params,
        pages.bytes,
      ),
      params.values,
      { prepare: false },
    );
    if (found.length === 0) return;
    const bytes = Number(found.at(-1)!.upto);
    pages.saw(found.length, bytes);
    yield found.map((row) => JSON.parse(row.r) as string[]);
    // A short page the budget did not cut is the range's last.
    if (found.length < limit && bytes < pages.bytes) return;
    after = JSON.parse(found.at(-1)!.k);
  }
}

/** Where {@linkcode planWriter}'s swap of unique values keeps the rows it took out. */
const SWAP_TABLE = "pg_temp.vestibule_swap";

/** SQLSTATE unique_violation. */
const UNIQUE_VIOLATION = "23505";

/**
 * The table `$1` and every table below it, partitions and inheritance children alike (both are
 * in `pg_inherits`): a row is deleted from the table that holds it, so that table's foreign keys
 * and triggers apply too.
 */
const TABLE_TREE = `(WITH RECURSIVE tree(relid) AS (
    SELECT $1::text::regclass::oid
    UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.relid)
  SELECT relid FROM tree)`;

/** A foreign key to the tree `$1` whose ON DELETE changes other rows (CASCADE, SET NULL/DEFAULT). */
const CHANGING_FOREIGN_KEY = `
  (SELECT format('foreign key %I of %s is ON DELETE %s', c.conname, c.conrelid::regclass,
            CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
              ELSE 'SET DEFAULT' END)
   FROM pg_constraint c
   WHERE c.contype = 'f' AND c.confrelid IN ${TABLE_TREE} AND c.confdeltype IN ('c', 'n', 'd')
   ORDER BY c.conname LIMIT 1)`;

/**
 * An enabled user trigger on INSERT, UPDATE or DELETE (tgtype bits 4, 16, 8) of the tree `$1`:
 * a row deleted and inserted again would fire the first and third, and skip an UPDATE trigger.
 */
const WRITE_TRIGGER = `
  (SELECT format('trigger %I on %s fires on INSERT, UPDATE or DELETE', t.tgname,
            t.tgrelid::regclass)
   FROM pg_trigger t
   WHERE t.tgrelid IN ${TABLE_TREE} AND NOT t.tgisinternal AND t.tgenabled <> 'D'
     AND t.tgtype & 28 <> 0
   ORDER BY t.tgname, t.tgrelid::regclass::text LIMIT 1)`;

/**
 * A rule that rewrites UPDATE, INSERT or DELETE (ev_type 2, 3, 4) of the table `$1`: rules apply
 * to the table a statement names, never to the partitions or children it reaches.
 */
const WRITE_RULE = `
  (SELECT format('rule %I on %s rewrites %s', r.rulename, r.ev_class::regclass,
            CASE r.ev_type WHEN '2' THEN 'UPDATE' WHEN '3' THEN 'INSERT' ELSE 'DELETE' END)
   FROM pg_rewrite r WHERE r.ev_class = $1::text::regclass AND r.ev_type IN ('2', '3', '4')
   ORDER BY r.rulename LIMIT 1)`;

/** A rule that rewrites INSERT on the table `$1`. */
const INSERT_RULE = `
  (SELECT format('rule %I', r.rulename) FROM pg_rewrite r
   WHERE r.ev_class = $1::text::regclass AND r.ev_type = '3' LIMIT 1)`;

/**
 * Inheritance children of the table `$1` when it is not partitioned: a row deleted from a child
 * and inserted again lands in the parent, without the child's own columns.
 */
const INHERITANCE_CHILD = `
  (SELECT format('%s inherits from it (a row inserted again would move to the parent)',
            i.inhrelid::regclass)
   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
   WHERE i.inhparent = $1::text::regclass AND c.relkind <> 'p'
   ORDER BY 1 LIMIT 1)`;

/** The first of `checks` that holds for the table, described, or null. */
async function hazard(destination: Tx, spec: TableSpec, checks: string[]): Promise<string | null> {
  const [row] = await destination.unsafe<{ hazard: string | null }[]>(
    `SELECT coalesce(${checks.join(", ")}) AS hazard`,
    [spec.sqlName],
    { prepare: false },
  );
  return row.hazard;
}

/** The destination's columns that are not synced (excluded, or not listed) and not generated. */
async function unsyncedColumns(destination: Tx, spec: TableSpec) {
  const columns = await destination.unsafe<{ name: string; type: string }[]>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
     WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
     ORDER BY attnum`,
    [spec.sqlName],
    { prepare: false },
  );
  return columns.filter((c) => !spec.columns.some((s) => s.name === c.name));
}

/**
 * Moves each sequence that feeds a synced column (identity or `serial`) past the column's highest
 * value, as `pg_dump` does, so a local insert at the destination (after a failover) takes a free
 * id; a sequence already past it stays where it is. Descending sequences, and values the
 * sequence cannot reach, are left alone.
 */
async function advanceSequences(destination: Tx, spec: TableSpec): Promise<string[]> {
  // Identity and `serial` sequences (owned by the column), and any other a column's default
  // calls (`DEFAULT nextval('tickets')`), for integer columns only (a sequence owned by a text
  // column of 'INV-' || nextval(...) values has no number to move to). Without SELECT and UPDATE
  // on a sequence, or USAGE on its schema (a login granted table rights only), it is left as it is,
  // and said so: a local insert after a failover would collide.
  const fed = await destination.unsafe<{ name: string; sequence: string; allowed: boolean }[]>(
    `SELECT DISTINCT a.attname AS name, s.oid::regclass::text AS sequence,
       -- Asked of sequences only (a default also depends on its own table), whatever the plan.
       CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(s.oid, 'SELECT')
         AND has_sequence_privilege(s.oid, 'UPDATE')
         AND has_schema_privilege(c.relnamespace, 'USAGE') END AS allowed
     FROM pg_attribute a
     JOIN pg_type ty ON ty.oid = a.atttypid
     CROSS JOIN LATERAL (
       SELECT pg_get_serial_sequence($1, a.attname)::regclass::oid AS oid
       UNION
       SELECT d.refobjid FROM pg_attrdef ad
       JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
         AND d.refclassid = 'pg_class'::regclass
       WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum) AS s
     JOIN pg_class c ON c.oid = s.oid AND c.relkind = 'S'
     WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND (CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END)
         IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)`,
    [spec.sqlName],
    { prepare: false },
  );
  const skipped: string[] = [];
  for (const { name, sequence, allowed } of fed) {
    if (!spec.columns.some((c) => c.name === name)) continue;
    if (!allowed) {
      skipped.push(
        `sequence ${sequence} of column "${name}" was not moved past the synced ids: the sync login may not read and update it (GRANT USAGE on its schema, SELECT and UPDATE on it)`,
      );
      continue;
    }
    // `sequence` is the server's own quoted name; a sequence's next value is `last_value` until
    // first called, `last_value + 1` after.
    const [state] = await destination.unsafe<{ beyond: boolean }[]>(
      `SELECT m.v > s.seqmax AS beyond,
         CASE WHEN m.v <= s.seqmax AND m.v >= q.last_value + q.is_called::int
           THEN setval(s.seqrelid, m.v) END
       FROM (SELECT max(t.${quoteIdent(name)})::bigint AS v FROM ${spec.sqlName} AS t) AS m,
            ${sequence} AS q, pg_sequence AS s
       WHERE s.seqrelid = $1::text::regclass AND s.seqincrement > 0`,
      [sequence],
      { prepare: false },
    );
    if (state?.beyond) {
      skipped.push(
        `sequence ${sequence} of column "${name}" was not moved past the synced ids: its maximum is below the highest id (ALTER SEQUENCE ... AS bigint), so a local insert may take a synced id`,
      );
    }
  }
  return skipped;
}

/** One table's writes, split so that several tables can share one transaction. */
export interface PlanWriter {
  /**
   * Updates, then inserts. A plain (not deferrable) UNIQUE is checked row by row, so a value the
   * owner moved between rows may still be held at the destination: by a row this sync deletes
   * (then deleted first and the writes run again), or by another updated row that takes a value
   * in turn, a swap no order of UPDATEs can apply (then the updated rows are deleted and
   * inserted again).
   */
  upsert(): Promise<void>;
  /** Deletes, once (a no-op unless `deleteMissing`). */
  delete(): Promise<void>;
  /** What the writes left undone without failing the table, for the report. */
  readonly warnings: string[];
}

/**
 * Write `plan` to the destination in two steps: the caller runs `upsert` for every table in
 * config order, parents first, then `delete` in reverse order, children first. A child row can
 * then move to a parent inserted before it, and its old parent is deleted after it moved. Rows
 * are read from the owner's transaction, so they match the diffed snapshot.
 */
export function planWriter(
  plan: DiffPlan,
  sides: { spec: TableSpec; owner: Tx; destination: Tx },
  options: ApplyOptions,
): PlanWriter {
  const { spec, owner, destination } = sides;
  const batch = options.batchRows ?? 1000;
  const pages = new PageSize(batch, options.batchBytes ?? BATCH_BYTES);
  const done = { inserted: 0, updated: 0, deleted: 0 };
  const counts = planCounts(plan);
  const total = counts.inserts + counts.updates + (options.deleteMissing ? counts.deletes : 0);
  const report = () => options.onProgress?.({ ...done, total });
  let deleted = false;
  let insertRule: Promise<boolean> | undefined;
  /** Whether a rule rewrites INSERT on the table, asked once. */
  const hasInsertRule = () =>
    insertRule ??= hazard(destination, spec, [INSERT_RULE]).then((found) => found !== null);

  let rewriting: Promise<string | null> | undefined;
  /** Fails the table when a trigger there stored other values than written; asked once. */
  // Inserted rows are read back from the table itself only (an index scan): rows a trigger
  // routed into an unindexed inheritance child would be scanned for every batch.
  // A partitioned table's rows are its partitions', which ONLY would miss.
  let partitioned: Promise<boolean> | undefined;
  const verify = async (tx: Tx, rows: string[][], only = false) => {
    const why = await (rewriting ??= hazard(destination, spec, [REWRITING_TRIGGER]));
    if (!why) return;
    partitioned ??= destination.unsafe<{ p: boolean }[]>(
      `SELECT relkind = 'p' AS p FROM pg_class WHERE oid = $1::text::regclass`,
      [spec.sqlName],
      { prepare: false },
    ).then(([row]) => row.p);
    await checkWritten(tx, spec, rows, why, only && !(await partitioned));
  };

  /** Reads `keys` from the owner a batch at a time and writes each batch with `write`. */
  async function writeKeys(
    keys: Key[],
    write: (rows: string[][]) => Promise<void>,
    count: "updated" | "inserted",
  ) {
    for await (const rows of keyedRows(owner, spec, keys, pages)) {
      await write(rows);
      done[count] += rows.length;
      report();
    }
  }

  async function update(tx: Tx) {
    await writeKeys(plan.updates, async (rows) => {
      await updateRows(tx, spec, rows);
      await verify(tx, rows);
    }, "updated");
  }

  async function insert(tx: Tx) {
    // Counted once at the end, not per batch: an unindexed child would be scanned every time.
    const unvouched: string[][] = [];
    const write = async (rows: string[][]) => {
      for (const key of await insertRows(tx, spec, rows, hasInsertRule)) unvouched.push(key);
      await verify(tx, rows, true);
    };
    await writeKeys(plan.inserts, write, "inserted");
    for (const { range, rows: planned } of plan.insertRanges) {
      let streamed = 0;
      for await (const rows of rangeRows(owner, spec, range, pages)) {
        await write(rows);
        streamed += rows.length;
        done.inserted += rows.length;
        report();
      }
      // The same snapshot counted them for the plan: a range that reads back otherwise has a
      // bound that does not name the rows it did (a citext key lowered in an ICU collation
      // bounded a range holding none of its 8 rows, reported inserted on every run).
      if (streamed !== planned) {
        throw new Error(
          `Cannot sync table "${spec.name}": a key range of ${planned} rows to insert read back ${streamed} at the owner (a key whose text form does not name exactly one row)`,
        );
      }
    }
    await checkInserted(tx, spec, unvouched);
  }

  /** Updates and inserts under a savepoint; the unique violation that undid them, if any. */
  async function tryUpsert(): Promise<Error | undefined> {
    const before = { ...done };
    try {
      // Through the savepoint's handle: the driver fails the whole transaction when a query of
      // the outer handle fails, even if the error is caught.
      await destination.savepoint(async (sp) => {
        await update(sp);
        await insert(sp);
      });
      return undefined;
    } catch (error) {
      if ((error as { code?: unknown }).code !== UNIQUE_VIOLATION) throw error;
      Object.assign(done, before);
      return error as Error;
    }
  }

  async function remove() {
    if (!options.deleteMissing || deleted) return;
    deleted = true;
    const cascading = plan.deleteRanges.length || plan.deletes.length
      ? await cascadingKeys(destination, spec)
      : [];
    await refuseUnmatchedDeletes(destination, spec, plan.deletes);
    await refuseCascades(destination, spec, cascading, plan);
    for (const range of plan.deleteRanges) {
      await deleteRange(destination, spec, range.range, range.rows);
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

  /**
   * Delete every row to update, then insert each with the owner's values and the destination's
   * own values of unsynced columns; all deletes come first, so values can move across batches.
   * Refused when that could change other rows (cascading foreign keys, triggers). A foreign key
   * checked at once (not DEFERRABLE) still fails the delete of a row it references.
   */
  async function replaceUpdates(conflict: Error) {
    const found = await hazard(destination, spec, [
      CHANGING_FOREIGN_KEY,
      WRITE_TRIGGER,
      WRITE_RULE,
      INHERITANCE_CHILD,
    ]);
    if (found) {
      throw new Error(
        `${
          describeError(conflict)
        } (a swap of values in "${spec.name}"): re-inserting the rows is refused because ${found}; declare the constraint DEFERRABLE`,
      );
    }
    const kept = await unsyncedColumns(destination, spec);
    const keyOffsets = spec.key.map((k) => spec.columns.findIndex((c) => c.name === k.name));
    // The deleted rows' keys and unsynced values wait at the destination in a temporary table, in
    // their own types: carried through here as text, 1,000 rows of 0.6 MB local columns made one
    // string too long. Needs the TEMPORARY privilege, which PUBLIC has by default.
    const held = [...spec.key, ...kept].map((c) => quoteIdent(c.name));
    await destination.unsafe(
      `CREATE TEMPORARY TABLE ${SWAP_TABLE} ON COMMIT DROP AS
       SELECT ${held.map((c) => `t.${c}`).join(", ")} FROM ${spec.sqlName} AS t WHERE false`,
    );
    let deletedRows = 0;
    for (let i = 0; i < plan.updates.length; i += batch) {
      const result = await destination.unsafe(
        `WITH gone AS (
           DELETE FROM ${spec.sqlName} AS t USING json_array_elements($1::text::json) AS j(k)
           WHERE ${keyJoin(spec, "j.k", undefined, "t.")}
           RETURNING ${held.map((c) => `t.${c}`).join(", ")})
         INSERT INTO ${SWAP_TABLE} SELECT * FROM gone`,
        [JSON.stringify(plan.updates.slice(i, i + batch))],
        { prepare: false },
      );
      deletedRows += result.count;
    }
    // The key as deleted meets the owner's key by value, with citext's own `=` as the delete's.
    const join = keyJoin(spec, "j.r", keyOffsets, "s.");
    const values = [
      ...castColumns(spec, "j.r"),
      ...kept.map((_, i) => `s.${held[spec.key.length + i]}`),
    ];
    let inserted = 0;
    for await (const rows of keyedRows(owner, spec, plan.updates, pages)) {
      const result = await destination.unsafe(
        `INSERT INTO ${spec.sqlName} (${
          [...spec.columns, ...kept].map((c) => quoteIdent(c.name)).join(", ")
        }) OVERRIDING SYSTEM VALUE
         SELECT ${values.join(", ")}
         FROM json_array_elements($1::text::json) AS j(r) JOIN ${SWAP_TABLE} AS s ON ${join}`,
        [JSON.stringify(rows)],
        { prepare: false },
      );
      inserted += result.count;
      done.updated += rows.length;
      report();
    }
    await destination.unsafe(`DROP TABLE ${SWAP_TABLE}`);
    // Every deleted row must come back; otherwise roll the whole transaction back.
    if (inserted !== deletedRows) {
      throw new Error(
        `Cannot sync table "${spec.name}": ${deletedRows} rows deleted to swap unique values but ${inserted} re-inserted`,
      );
    }
  }

  const warnings: string[] = [];

  async function upsert() {
    if (counts.inserts + counts.updates === 0) return;
    let conflict = await tryUpsert();
    if (!conflict) return;
    if (options.deleteMissing && !deleted) {
      // Early, before the updates of this and later tables: a cascade would remove rows they
      // still update.
      const found = await hazard(destination, spec, [CHANGING_FOREIGN_KEY]);
      if (found) {
        throw new Error(`${describeError(conflict)}: deleting first is refused because ${found}`);
      }
      await remove();
      conflict = await tryUpsert();
      if (!conflict) return;
    }
    // Inserts alone never swap: the value is held by a row this sync keeps.
    if (plan.updates.length === 0) throw conflict;
    await replaceUpdates(conflict);
    await insert(destination);
  }

  return {
    async upsert() {
      await upsert();
      if (counts.inserts + counts.updates > 0) {
        warnings.push(...await advanceSequences(destination, spec));
      }
    },
    delete: remove,
    warnings,
  };
}
