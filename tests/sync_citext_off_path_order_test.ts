/**
 * b0c2747 joins a citext key with citext's own `=` when the extension lives off the search path,
 * but the key ranges and keyset pages still compare with a bare `>=`, `<` and `>`: there they
 * resolve to text's case-sensitive operators (citext casts to text implicitly), while
 * `ORDER BY k` sorts by citext's btree class, case-insensitively. A page that ends at 'a' then
 * asks for `k > 'a'` bytewise and skips 'B' (and every upper-case key sorted after a lower-case
 * one): rows never reach the destination.
 */
import assert from "node:assert/strict";
import { attemptOn, BACKENDS, fingerprint } from "./sync_fixtures.ts";

const postgres = BACKENDS.find((backend) => backend.name === "postgres")!;

/** citext moved to schema `ext`, off the search path, then `tables`' DDL. */
const offPath = (tables: string) =>
  `CREATE EXTENSION IF NOT EXISTS citext; CREATE SCHEMA IF NOT EXISTS ext;
  ALTER EXTENSION citext SET SCHEMA ext; ${tables}`;

/** What one attempt on a table reports having written. */
type Expected = { inserts: number; updates: number; deletes: number };

Deno.test({
  name: "citext off the search path: keyset pages in citext order skip no key",
  ignore: postgres.ignoreReason !== undefined,
  async fn(t) {
    const pair = await postgres.pair();
    try {
      const ddl = offPath(`CREATE TABLE k_pages (k ext.citext PRIMARY KEY, v int);
        CREATE TABLE k_pairs (k ext.citext, n int, v int, PRIMARY KEY (k, n));`);
      await pair.owner.exec(
        `${ddl} INSERT INTO k_pages VALUES ('a', 1), ('B', 2), ('c', 3), ('D', 4), ('e', 5);
         INSERT INTO k_pairs SELECT k, n, 1 FROM k_pages, generate_series(1, 2) AS n;`,
      );
      await pair.destination.exec(ddl);
      const cases: Array<[string, string[], number, number]> = [
        ["k_pages", ["k"], 1, 5],
        ["k_pages", ["k"], 2, 5],
        ["k_pairs", ["k", "n"], 3, 10],
      ];
      for (const [name, key, batchRows, rows] of cases) {
        await t.step(`${name}, ${batchRows} row(s) a page`, async () => {
          await pair.destination.exec(`DELETE FROM ${name};`);
          const table = `public.${name}`;
          const reports = await attemptOn(pair, [{ name: table, primary_key: key }], batchRows);
          const report = reports.find((r) => r.table === table)!;
          assert.equal(report.status, "applied", report.error);
          assert.equal(report.inserts, rows);
          assert.equal(
            await fingerprint(pair.destination, name, key.join(", ")),
            await fingerprint(pair.owner, name, key.join(", ")),
          );
        });
      }
    } finally {
      await pair.close();
    }
  },
});

// A swap of UNIQUE values between rows keyed by citext kept off the search path (as
// `ALTER EXTENSION citext SET SCHEMA ext` leaves it), where the destination spells a key in
// another letter case: the rows deleted to swap must all come back, matched by citext's own `=`
// as the delete matched them, not by text's case-sensitive one.
Deno.test({
  name:
    "a unique swap on a citext key off the search path, spelt in another case, re-inserts every row",
  // PGlite is started without the citext extension.
  ignore: postgres.ignoreReason !== undefined,
  async fn() {
    const pair = await postgres.pair();
    try {
      const ddl = offPath(`CREATE TABLE seat (k ext.citext PRIMARY KEY, code text UNIQUE, v int);`);
      // The owner moved code X from b to a and Y from a to b: no order of UPDATEs applies it.
      await pair.owner.exec(ddl + `INSERT INTO seat VALUES ('a', 'X', 1), ('b', 'Y', 2);`);
      await pair.destination.exec(ddl + `INSERT INTO seat VALUES ('A', 'Y', 1), ('b', 'X', 2);`);
      const [report] = await attemptOn(pair, [{ name: "public.seat", primary_key: ["k"] }]);
      const rows = await pair.destination.column(
        `SELECT k || ' ' || code FROM seat ORDER BY k::text COLLATE "C"`,
      );
      // Never a row lost: either the swap is applied in full, or nothing is written.
      assert.ok(rows.length === 2, `rows at the destination: ${JSON.stringify(rows)}`);
      assert.equal(report.error, undefined);
      assert.equal(report.status, "applied");
      assert.deepEqual(rows, ["a X", "b Y"]);
    } finally {
      await pair.close();
    }
  },
});

// A composite key with a citext column off the search path is compared column by column with
// citext's own operators. A range's lower bound is inclusive: the row at a range's exact lower
// bound (an owner cut, an insert range's first key, a segment's first key) belongs to that range
// and no other. Were it `>`, that row would fall in no segment (never updated, never deleted) and
// no insert range would read it.
Deno.test({
  name: "citext off the search path, composite key: the row at a range's lower bound is synced",
  // PGlite is started without the citext extension.
  ignore: postgres.ignoreReason !== undefined,
  async fn(t) {
    const pair = await postgres.pair();
    try {
      const ddl = offPath(`CREATE TABLE cpair (k ext.citext, n int, v int, PRIMARY KEY (k, n));`);
      // Letter case alternates, so citext order is not byte order: 900 rows, several segments,
      // and a segment may start at any of a key's 3 rows.
      const rows = `SELECT CASE WHEN i % 2 = 0 THEN 'K' ELSE 'k' END || lpad(i::text, 4, '0'),
        n, i FROM generate_series(1, 300) AS i, generate_series(1, 3) AS n`;
      await pair.owner.exec(`${ddl} INSERT INTO cpair ${rows};`);
      await pair.destination.exec(ddl);
      const table = [
        {
          name: "public.cpair",
          primary_key: ["k", "n"],
          delete_missing: true,
          max_delete_ratio: 1,
        },
      ];
      const sync = async (expect: Expected) => {
        const [report] = await attemptOn(pair, table);
        assert.equal(report.status, "applied", report.error);
        assert.deepEqual(
          { inserts: report.inserts, updates: report.updates, deletes: report.deletes },
          expect,
        );
        assert.equal(
          await fingerprint(pair.destination, "cpair", "k, n"),
          await fingerprint(pair.owner, "cpair", "k, n"),
        );
      };
      // Each step starts the destination from the owner's rows, then changes some.
      const step = (name: string, change: string, expect: Expected) =>
        t.step(name, async () => {
          await pair.destination.exec(`TRUNCATE cpair; INSERT INTO cpair ${rows}; ${change}`);
          await sync(expect);
        });
      await step(
        "a gap in the middle is filled by bounded insert ranges",
        `DELETE FROM cpair WHERE v > 40 AND v <= 260;`,
        { inserts: 660, updates: 0, deletes: 0 },
      );
      await step("every row changed: every row is updated", `UPDATE cpair SET v = -v;`, {
        inserts: 0,
        updates: 900,
        deletes: 0,
      });
      await step(
        "rows only at the destination are deleted",
        `INSERT INTO cpair SELECT k, n + 3, v FROM cpair;`,
        { inserts: 0, updates: 0, deletes: 900 },
      );
    } finally {
      await pair.close();
    }
  },
});
