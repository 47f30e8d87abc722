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

Deno.test({
  name: "citext off the search path: keyset pages in citext order skip no key",
  ignore: postgres.ignoreReason !== undefined,
  async fn(t) {
    const pair = await postgres.pair();
    try {
      const ddl = `CREATE EXTENSION IF NOT EXISTS citext; CREATE SCHEMA IF NOT EXISTS ext;
        ALTER EXTENSION citext SET SCHEMA ext;
        CREATE TABLE k_pages (k ext.citext PRIMARY KEY, v int);
        CREATE TABLE k_pairs (k ext.citext, n int, v int, PRIMARY KEY (k, n));`;
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
      const ddl = `CREATE EXTENSION IF NOT EXISTS citext; CREATE SCHEMA ext;
        ALTER EXTENSION citext SET SCHEMA ext;
        CREATE TABLE seat (k ext.citext PRIMARY KEY, code text UNIQUE, v int);`;
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
