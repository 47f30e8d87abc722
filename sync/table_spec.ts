/** @module Reads a table's columns and primary key from each database and checks they agree. */
import type postgres from "postgres";
import type { TableConfig } from "./config.ts";
import { SyncRefusedError } from "./errors.ts";

/** One column as synced: its name, its type as `format_type` prints it, and how to order it. */
export interface ColumnSpec {
  name: string;
  type: string;
  /**
   * Order under an explicit `COLLATE "C"` so every server agrees on key order. False for
   * non-text types and for text that every database already orders bytewise (C or POSIX), where
   * the explicit clause would only stop PostgreSQL from using the primary key index.
   */
  collateC: boolean;
  /** `GENERATED ALWAYS AS IDENTITY`: inserts need `OVERRIDING SYSTEM VALUE`, updates skip it. */
  identityAlways?: boolean;
  /** The type's name (`typname`), or a domain's base type's: equality and order come from it. */
  baseType: string;
  /**
   * The built-in `bpchar` (or a domain over it), whose `::text` drops the trailing blanks it
   * keeps; decided by type, since another schema may have a type of that name.
   */
  blankPadded?: boolean;
  /** Whether the base type is a built-in one (`pg_catalog`): `app.interval` is no interval. */
  catalogBase?: boolean;
  /** The schema of the base type (`citext`'s own `=` lives there, maybe off the search path). */
  baseSchema?: string;
  /**
   * An enum's labels (of a domain's base enum too) in the enum's sort order, or null. Keys are
   * ordered by it, so every database must declare the same labels in the same order.
   */
  enumLabels: string[] | null;
}

/** What the diff and apply code need to know about one table. */
export interface TableSpec {
  /** `schema.table` as configured. */
  name: string;
  /** Quoted `"schema"."table"`. */
  sqlName: string;
  /** Synced columns sorted by name (code point order); the hash covers exactly these. */
  columns: ColumnSpec[];
  /** Primary key columns in configured order. */
  key: ColumnSpec[];
}

interface Shape {
  columns: Map<
    string,
    ColumnSpec & {
      generated: boolean;
      bytewise: boolean;
      /**
       * What the column's type stands for beyond its name, through domains and array elements:
       * a domain's base with its modifier (`numeric(12,4)`), a composite's fields with their
       * types, a range's subtype; null for built-in types. One name can hide another definition
       * in each database, and values are coerced on write: they would never converge.
       */
      definition: string | null;
      /**
       * Equal values of the type can print differently where the diff's key text cannot make
       * them alike: jsonb, composite types, numeric, floats, intervals, citext or bpchar inside
       * an array or range (`{1.0}` and `{1.00}` are one `numeric[]` key), and any value under a
       * nondeterministic collation.
       */
      ambiguousText: boolean;
    }
  >;
  primaryKey: string[];
}

/** Quote an identifier for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * The column's type and every type it stands on, through domains (to their base), array elements
 * and range or multirange subtypes (those and the types below them `inside`), as a `walk(oid,
 * inside, depth)` the query after it reads; `a` is the column's pg_attribute row.
 */
const THROUGH_ELEMENTS = `WITH RECURSIVE walk(oid, inside, depth) AS (
  SELECT a.atttypid, false, 0
  UNION ALL
  SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype
           WHEN t.typtype IN ('r', 'm') THEN (SELECT r.rngsubtype FROM pg_range r
             WHERE r.rngtypid = t.oid OR (to_jsonb(r)->>'rngmultitypid')::oid = t.oid
             LIMIT 1)
           ELSE t.typelem END,
    w.inside OR t.typtype <> 'd', w.depth + 1
  FROM walk w JOIN pg_type t ON t.oid = w.oid
  WHERE w.depth < 16
    AND (t.typtype IN ('d', 'r', 'm') OR (t.typcategory = 'A' AND t.typelem <> 0))
)`;

async function readShape(sql: postgres.Sql, table: string): Promise<Shape | undefined> {
  const [schema, relation] = table.split(".");
  const rows = await sql<
    {
      name: string;
      type: string;
      collatable: boolean;
      bytewise: boolean;
      generated: boolean;
      identity_always: boolean;
      base_type: string;
      blank_padded: boolean;
      catalog_base: boolean;
      base_schema: string;
      enum_labels: string[] | null;
      definition: string | null;
      ambiguous_text: boolean;
    }[]
  >`
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
           a.attcollation <> 0 AS collatable,
           -- 100 is the database default collation; datlocprovider exists from PostgreSQL 15.
           CASE WHEN a.attcollation = 100 THEN
             (SELECT coalesce(to_jsonb(d)->>'datlocprovider', 'c') = 'c'
                AND d.datcollate IN ('C', 'POSIX')
              FROM pg_database d WHERE d.datname = current_database())
           ELSE coalesce((SELECT co.collprovider = 'c' AND co.collcollate IN ('C', 'POSIX')
              FROM pg_collation co WHERE co.oid = a.attcollation), false)
           END AS bytewise,
           a.attgenerated <> '' AS generated, a.attidentity = 'a' AS identity_always,
           base.name AS base_type, base.oid = 'pg_catalog.bpchar'::regtype AS blank_padded,
           base.nsp = 'pg_catalog'::regnamespace AS catalog_base,
           (SELECT nspname::text FROM pg_namespace WHERE oid = base.nsp) AS base_schema,
           -- An enum's labels in order, through domains, array elements and range subtypes:
           -- the enum orders a key of lvl[] or a range over lvl as it orders lvl.
           (${sql.unsafe(THROUGH_ELEMENTS)}
            SELECT json_agg(e.enumlabel::text ORDER BY w.depth, e.enumsortorder)
            FROM walk w JOIN pg_enum e ON e.enumtypid = w.oid) AS enum_labels,
           -- What the type stands for beyond its name (see Shape): domains' bases with their
           -- modifiers, composite fields, range subtypes, through domains and array elements.
           (WITH RECURSIVE walk(oid, depth) AS (
              SELECT a.atttypid, 0
              UNION ALL
              SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END, w.depth + 1
              FROM walk w JOIN pg_type t ON t.oid = w.oid
              WHERE w.depth < 16 AND (t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0))
            )
            SELECT string_agg(
              CASE WHEN t.typtype = 'd' THEN format_type(t.oid, NULL) || ' over '
                  || format_type(t.typbasetype, t.typtypmod)
                -- A field's or subtype's own domain is followed one level: its base and modifier.
                WHEN t.typtype = 'c' THEN format_type(t.oid, NULL) || ' (' || coalesce((
                  SELECT string_agg(f.attname || ' ' || format_type(f.atttypid, f.atttypmod)
                      || coalesce(' over ' || format_type(fd.typbasetype, fd.typtypmod), ''),
                    ', ' ORDER BY f.attnum)
                  FROM pg_attribute f
                  LEFT JOIN pg_type fd ON fd.oid = f.atttypid AND fd.typtype = 'd'
                  WHERE f.attrelid = t.typrelid AND f.attnum > 0 AND NOT f.attisdropped), '') || ')'
                -- A range's collation orders it (no COLLATE "C" can), so it is part of what
                -- the range stands for: the database's own when it names the default one.
                WHEN t.typtype IN ('r', 'm') THEN format_type(t.oid, NULL) || ' of ' || (
                  SELECT format_type(r.rngsubtype, NULL)
                    || coalesce(' over ' || format_type(sd.typbasetype, sd.typtypmod), '')
                    || CASE r.rngcollation WHEN 0 THEN '' WHEN 100 THEN (
                         SELECT ' collate ' || coalesce(to_jsonb(d)->>'datlocprovider', 'c') || ':'
                           || coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale',
                             d.datcollate)
                         FROM pg_database d WHERE d.datname = current_database())
                       ELSE (
                         SELECT ' collate ' || co.collprovider::text || ':'
                           || coalesce(to_jsonb(co)->>'colllocale', to_jsonb(co)->>'colliculocale',
                             co.collcollate, '')
                         FROM pg_collation co WHERE co.oid = r.rngcollation) END
                  FROM pg_range r LEFT JOIN pg_type sd ON sd.oid = r.rngsubtype AND sd.typtype = 'd'
                  -- rngmultitypid exists from PostgreSQL 14; read so, older servers parse it too.
                  WHERE r.rngtypid = t.oid OR (to_jsonb(r)->>'rngmultitypid')::oid = t.oid
                  LIMIT 1)
              END, '; ' ORDER BY w.depth)
            FROM walk w JOIN pg_type t ON t.oid = w.oid) AS definition,
           -- Through domains, array elements and range subtypes (the latter "inside").
           (${sql.unsafe(THROUGH_ELEMENTS)}
            -- Built-in types by their schema (a domain app.jsonb over int is no jsonb); citext
            -- by name, as an extension installs it in any schema. Unbounded bpchar keeps the
            -- trailing blanks its equality ignores, and prints them inside an array or range.
            SELECT coalesce(bool_or(t.typtype = 'c'
              OR (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname = 'jsonb')
              OR (w.inside AND (t.typname = 'citext' OR (t.typnamespace = 'pg_catalog'::regnamespace
                AND t.typname IN ('numeric', 'float4', 'float8', 'interval', 'bpchar'))))), false)
            FROM walk w JOIN pg_type t ON t.oid = w.oid)
           -- A nondeterministic collation (case-insensitive ICU) makes 'Apple' and 'apple' one key.
           OR coalesce((SELECT to_jsonb(co)->>'collisdeterministic' = 'false' FROM pg_collation co
              WHERE co.oid = a.attcollation), false) AS ambiguous_text
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    -- A domain (of a domain...) orders, compares and prints as its base type.
    CROSS JOIN LATERAL (
      WITH RECURSIVE chain(oid, next) AS (
        SELECT t.oid, t.typbasetype FROM pg_type t WHERE t.oid = a.atttypid
        UNION ALL SELECT t.oid, t.typbasetype FROM pg_type t JOIN chain ON t.oid = chain.next
      )
      SELECT chain.oid, t.typname::text AS name, t.typnamespace AS nsp FROM chain JOIN pg_type t ON t.oid = chain.oid
      WHERE chain.next = 0
    ) AS base
    WHERE n.nspname = ${schema} AND c.relname = ${relation} AND c.relkind IN ('r', 'p')
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum`;
  if (rows.length === 0) return undefined;
  const key = await sql<{ name: string }[]>`
    SELECT a.attname AS name
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE n.nspname = ${schema} AND c.relname = ${relation} AND i.indisprimary
    ORDER BY k.ord`;
  return {
    columns: new Map(rows.map((r) => [r.name, {
      name: r.name,
      type: r.type,
      collateC: r.collatable,
      bytewise: r.bytewise,
      generated: r.generated,
      identityAlways: r.identity_always,
      baseType: r.base_type,
      blankPadded: r.blank_padded,
      catalogBase: r.catalog_base,
      baseSchema: r.base_schema,
      enumLabels: r.enum_labels,
      definition: r.definition,
      ambiguousText: r.ambiguous_text,
    }])),
    primaryKey: key.map((r) => r.name),
  };
}

const listNames = (names: string[]) => `(${names.map((n) => `"${n}"`).join(", ")})`;
const listLabels = (labels: string[]) => `(${labels.map((l) => `'${l}'`).join(", ")})`;

/**
 * Read `table` on every database and return the spec they all agree on.
 *
 * @param databases region name to client, owner first
 * @throws {SyncRefusedError} when the table or a column is missing somewhere, a column's type
 * differs, or a primary key differs from the configured one
 */
export async function resolveTableSpec(
  table: TableConfig,
  databases: { region: string; sql: postgres.Sql }[],
): Promise<TableSpec> {
  const refuse = (detail: string) =>
    new SyncRefusedError(`Cannot sync table "${table.name}": ${detail}`);
  const shapes = await Promise.all(
    databases.map((db) =>
      readShape(db.sql, table.name).catch((error) => {
        // The first query each database gets: a wrong database name or login says where.
        // The error itself is kept (retries read its SQLSTATE).
        if (error instanceof Error) error.message = `at "${db.region}": ${error.message}`;
        throw error;
      })
    ),
  );
  shapes.forEach((shape, i) => {
    if (!shape) throw refuse(`table is missing at "${databases[i].region}"`);
  });
  const owner = databases[0].region;
  // Row hashes are of each server's own bytes: text outside ASCII hashes otherwise in LATIN1 than
  // in UTF8, so equal rows would be written again on every run.
  const encodings = await Promise.all(
    databases.map(async (db) =>
      (await db.sql.unsafe<{ e: string }[]>(`SELECT current_setting('server_encoding') AS e`))[0].e
    ),
  );
  encodings.forEach((encoding, i) => {
    if (encoding !== encodings[0]) {
      throw refuse(
        `the database encoding is ${encodings[0]} at "${owner}" but ${encoding} at "${
          databases[i].region
        }": row checksums would differ for equal text`,
      );
    }
  });
  const ownerShape = shapes[0]!;
  const excluded = new Set(table.exclude_columns);
  for (const name of excluded) {
    // A misspelt exclusion would silently sync (and overwrite) the column it meant to protect.
    if (!shapes.some((shape) => shape!.columns.has(name))) {
      throw refuse(`excluded column "${name}" is missing at every database`);
    }
  }
  const wanted = table.columns ??
    [...ownerShape.columns.values()].filter((c) => !c.generated).map((c) => c.name);
  const names = wanted.filter((n) => !excluded.has(n)).sort();

  for (const [i, shape] of shapes.entries()) {
    const region = databases[i].region;
    for (const name of names) {
      const column = shape!.columns.get(name);
      if (!column) throw refuse(`column "${name}" is missing at "${region}"`);
      const ownerType = ownerShape.columns.get(name)?.type;
      if (ownerType === undefined) throw refuse(`column "${name}" is missing at "${owner}"`);
      if (column.type !== ownerType) {
        throw refuse(
          `column "${name}" is ${ownerType} at "${owner}" but ${column.type} at "${region}"`,
        );
      }
      const { baseType: ownerBase, enumLabels: ownerLabels } = ownerShape.columns.get(name)!;
      if (column.baseType !== ownerBase) {
        throw refuse(
          `column "${name}" is ${ownerType} over ${ownerBase} at "${owner}" but over ${column.baseType} at "${region}"`,
        );
      }
      const ownerDefinition = ownerShape.columns.get(name)!.definition;
      if (column.definition !== ownerDefinition) {
        throw refuse(
          `column "${name}" is ${ownerDefinition ?? ownerType} at "${owner}" but ${
            column.definition ?? column.type
          } at "${region}"`,
        );
      }
      // A key's segments are cut in the owner's enum order and summed in the destination's:
      // another order mismatches them, so equal rows are deleted and inserted again (losing
      // unsynced columns). Every enum column is checked, as a label missing somewhere fails writes.
      if (column.enumLabels?.join("\0") !== ownerLabels?.join("\0")) {
        throw refuse(
          `column "${name}" is ${ownerType} with labels ${
            listLabels(ownerLabels ?? [])
          } at "${owner}" but ${listLabels(column.enumLabels ?? [])} at "${region}"`,
        );
      }
      if (column.generated) throw refuse(`column "${name}" is generated at "${region}"`);
      // Such a column can only be updated to DEFAULT: outside the key it would never converge.
      if (column.identityAlways && !table.primary_key.includes(name)) {
        throw refuse(
          `column "${name}" is GENERATED ALWAYS AS IDENTITY at "${region}": list it in ` +
            "exclude_columns, or make it GENERATED BY DEFAULT",
        );
      }
    }
    if (!table.columns) {
      // Every other column must be accounted for, or inserts would silently drop its data.
      for (const column of shape!.columns.values()) {
        if (!column.generated && !excluded.has(column.name) && !names.includes(column.name)) {
          throw refuse(`column "${column.name}" is missing at "${owner}"`);
        }
      }
    }
    for (const name of table.primary_key) {
      const column = shape!.columns.get(name);
      if (column?.ambiguousText) {
        throw refuse(
          `primary key column "${name}" is ${column.type} at "${region}": equal keys of it can print differently (as {1.0} and {1.00} do), so rows cannot be paired by it; key the table by another column`,
        );
      }
    }
    if (shape!.primaryKey.join("\0") !== table.primary_key.join("\0")) {
      throw refuse(
        shape!.primaryKey.length === 0
          ? `there is no primary key at "${region}"`
          : `primary key is ${listNames(shape!.primaryKey)} at "${region}" but the config says ${
            listNames(table.primary_key)
          }`,
      );
    }
  }
  const columns = names.map((n) => {
    const { generated: _, bytewise: __, ambiguousText: ___, ...spec } = ownerShape.columns.get(n)!;
    const bytewise = shapes.every((shape) => shape!.columns.get(n)!.bytewise);
    // Any destination may declare it ALWAYS; OVERRIDING SYSTEM VALUE suits BY DEFAULT ones too.
    const identityAlways = shapes.some((shape) => shape!.columns.get(n)!.identityAlways);
    return { ...spec, collateC: spec.collateC && !bytewise, identityAlways };
  });
  const [schema, relation] = table.name.split(".");
  return {
    name: table.name,
    sqlName: `${quoteIdent(schema)}.${quoteIdent(relation)}`,
    columns,
    key: table.primary_key.map((k) => columns.find((c) => c.name === k)!),
  };
}
