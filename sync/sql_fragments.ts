/** @module SQL text shared by the diff and apply steps: hashes, key order, ranges, row text. */
import type { ColumnSpec, TableSpec } from "./table_spec.ts";
import { quoteIdent } from "./table_spec.ts";
import { PINNED_SETTINGS, TUNED_SETTINGS } from "./database.ts";

/** A primary key as the text of each key column, in configured order. */
export type Key = string[];

/** Keys from `lo` (inclusive) to `hi` (exclusive) in `COLLATE "C"` key order; null is unbounded. */
export interface KeyRange {
  lo: Key | null;
  hi: Key | null;
}

/** Positional parameters collected while building one statement; all are sent as text. */
export class Params {
  readonly values: string[] = [];
  /** Add a value and return its placeholder, typed text so the driver never converts it. */
  add(value: string): string {
    this.values.push(value);
    return `$${this.values.length}::text`;
  }
}

/** `SET LOCAL` for every pinned and tuned setting, in one statement; first in every transaction. */
export const PIN_SESSION_SQL = `SELECT ${
  Object.entries({ ...PINNED_SETTINGS, ...TUNED_SETTINGS })
    .map(([name, value]) => `set_config('${name}', '${value}', true)`)
    .join(", ")
}`;

const ident = (column: ColumnSpec) => quoteIdent(column.name);

/**
 * A column's value as the text its readers see. `bpchar::text` drops trailing blanks, which an
 * unbounded `bpchar` (or a domain over it) keeps and prints; its output function does not.
 */
function valueText(c: ColumnSpec, prefix: string): string {
  if (c.blankPadded) return `bpcharout(${prefix}${ident(c)})::text`;
  return `(${prefix}${ident(c)})::text`;
}

/** The key column as ordered: text under `COLLATE "C"` (byte order, the same everywhere). */
function ordered(column: ColumnSpec, prefix = ""): string {
  return `${prefix}${ident(column)}${column.collateC ? ` COLLATE "C"` : ""}`;
}

/** `ORDER BY` list for the key. */
export function keyOrder(spec: TableSpec, prefix = ""): string {
  return spec.key.map((c) => ordered(c, prefix)).join(", ");
}

/**
 * Per-row 64-bit hash of the synced columns. `ARRAY[...]::text` quotes "" and "null" and prints
 * SQL NULL bare, so the three stay distinct. `json` is hashed as the text it stores, as readers
 * see it: `1e2` and `100`, or keys in another order, are not the same `json` (as `jsonb` they
 * are). `hashtextextended` exists since PostgreSQL 11 and, unlike `md5`, works on FIPS servers.
 */
export function rowHash(spec: TableSpec, prefix = ""): string {
  const parts = spec.columns.map((c) => valueText(c, prefix));
  return `hashtextextended((ARRAY[${parts.join(", ")}]::text) COLLATE "C", 0)`;
}

/**
 * A key column as text that is equal exactly when the values are equal: `numeric` drops
 * trailing fractional zeros, so 1.0 and 1.00 are the same key on both sides; floats and
 * intervals are printed alike when equal. Decided by the base
 * type, not the printed name, which a domain or a schema-qualified `citext` would hide.
 */
function keyText(c: ColumnSpec, prefix: string): string {
  const text = `(${prefix}${ident(c)})::text`;
  // citext compares case-insensitively: 'Example.com' and 'example.com' are the same key.
  if (c.baseType === "citext") return `lower(${text})`;
  // Floats: -0 equals 0 (and prints "-0"). Intervals: '1 day' equals '24:00:00' and '1 mon'
  // equals '30 days' (interval comparison counts a month as 30 days, a day as 24 hours), and
  // justify_interval prints every such pair alike.
  // The built-ins only: an app's own `app.interval` (an enum) has no justify_interval().
  if (!c.catalogBase) return text;
  if (c.baseType === "float4" || c.baseType === "float8") {
    return `CASE WHEN ${prefix}${ident(c)} = 0 THEN '0' ELSE ${text} END`;
  }
  if (c.baseType === "interval") return `(justify_interval(${prefix}${ident(c)}))::text`;
  if (c.baseType !== "numeric") return text;
  return `CASE WHEN strpos(${text}, '.') > 0 THEN rtrim(rtrim(${text}, '0'), '.') ELSE ${text} END`;
}

/** The key as a JSON array of text, one column of output. */
export function keyJson(spec: TableSpec, prefix = ""): string {
  return `to_json(ARRAY[${spec.key.map((c) => keyText(c, prefix)).join(", ")}])::text`;
}

/**
 * The key columns' own text as a JSON array, for a range bound or a page to resume after: cast
 * back to the column's type and compared as the range is ordered, it names the same row.
 * {@linkcode keyJson}'s text is for equality across databases; as a bound it can sort elsewhere (a
 * citext key lowered in an ICU collation bounded a range that held none of its rows, and resuming
 * after 'école' skipped 'Édith').
 */
export function keyBoundJson(spec: TableSpec, prefix = ""): string {
  return `to_json(ARRAY[${spec.key.map((c) => `(${prefix}${ident(c)})::text`).join(", ")}])::text`;
}

/** The synced columns (in spec order) as a JSON array of text: values travel as their text form. */
export function rowJson(spec: TableSpec, prefix = ""): string {
  return `to_json(ARRAY[${spec.columns.map((c) => valueText(c, prefix)).join(", ")}])::text`;
}

function compareKey(spec: TableSpec, op: string, key: Key, params: Params, prefix: string) {
  const values = spec.key.map((c, i) => `(${params.add(key[i])})::${c.type}`);
  return compareValues(spec, op, values, prefix);
}

/**
 * citext's own operator `op`, named by its schema: off the search path a bare `>` is text's,
 * case-sensitive, while `ORDER BY` sorts by citext's btree class (and `=` is exact).
 */
function keyOp(column: ColumnSpec, op: string): string {
  return column.baseType === "citext" && column.baseSchema
    ? `OPERATOR(${quoteIdent(column.baseSchema)}.${op})`
    : op;
}

/**
 * `ROW(key) op ROW(values)`; spelled out column by column when a column needs its own operator
 * ({@linkcode keyOp}), since a row comparison takes one operator name for every column.
 */
function compareValues(spec: TableSpec, op: string, values: string[], prefix: string): string {
  const columns = spec.key.map((c) => ordered(c, prefix));
  if (spec.key.length === 1) return `${columns[0]} ${keyOp(spec.key[0], op)} ${values[0]}`;
  if (spec.key.every((c) => keyOp(c, op) === op)) {
    return `ROW(${columns.join(", ")}) ${op} ROW(${values.join(", ")})`;
  }
  const strict = op[0]; // `>=` → `>`, `<` → `<`
  let condition = `${columns.at(-1)} ${keyOp(spec.key.at(-1)!, op)} ${values.at(-1)}`;
  for (let i = spec.key.length - 2; i >= 0; i--) {
    const c = spec.key[i];
    condition = `(${columns[i]} ${keyOp(c, strict)} ${values[i]} OR (${columns[i]} ${
      keyOp(c, "=")
    } ${values[i]} AND ${condition}))`;
  }
  return condition;
}

/** `WHERE` condition for a key range (`TRUE` when unbounded). */
export function rangeCondition(
  spec: TableSpec,
  range: KeyRange,
  params: Params,
  prefix = "",
): string {
  const parts: string[] = [];
  if (range.lo) parts.push(compareKey(spec, ">=", range.lo, params, prefix));
  if (range.hi) parts.push(compareKey(spec, "<", range.hi, params, prefix));
  return parts.length ? parts.join(" AND ") : "TRUE";
}

/**
 * `WHERE` condition for a range whose bounds are elements 0 (lo) and 1 (hi) of the JSON array
 * `json`, each an array of key text; both bounds must be present.
 */
export function jsonRangeCondition(spec: TableSpec, json: string, prefix = ""): string {
  const bound = (n: number) => spec.key.map((c, i) => `(${json}->${n}->>${i})::${c.type}`);
  return `${compareValues(spec, ">=", bound(0), prefix)} AND ${
    compareValues(spec, "<", bound(1), prefix)
  }`;
}

/** Condition `ROW(key) > ROW(after)`, for keyset pagination. */
export function afterCondition(spec: TableSpec, after: Key, params: Params, prefix = ""): string {
  return compareKey(spec, ">", after, params, prefix);
}

/** Join condition matching the table's key to element `alias` of a JSON array of key text. */
export function keyJoin(spec: TableSpec, alias: string, offsets?: number[], prefix = ""): string {
  return spec.key.map((c, i) => {
    // citext's own `=`, which an extension schema off the search path hides (text's is exact).
    const eq = keyOp(c, "=");
    return `${prefix}${ident(c)} ${eq} (${alias}->>${offsets ? offsets[i] : i})::${c.type}`;
  }).join(" AND ");
}

/** Comma-separated quoted column names. */
export function quoteIdentList(columns: ColumnSpec[]): string {
  return columns.map(ident).join(", ");
}
