/** Sync with keys and constraints that need care: identity keys, deferrable constraints, citext. */
import assert from "node:assert/strict";
import { runAttempt, type TableReport } from "../sync/run_attempt.ts";
import { BACKENDS, collectLog, fingerprint, type Pair } from "./sync_fixtures.ts";

function only(reports: TableReport[], table: string): TableReport {
  const found = reports.filter((r) => r.table === table);
  assert.equal(found.length, 1, `expected one report for ${table}`);
  return found[0];
}

async function attempt(pair: Pair, tables: unknown[], extra?: Record<string, unknown>) {
  const { config, databases } = pair.connect(tables, extra);
  const { lines, log } = collectLog();
  try {
    const reports = await runAttempt(config, databases, { dryRun: false, log, retryDelayMs: 1 });
    return { reports, lines };
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
  }
}

for (const backend of BACKENDS) {
  Deno.test({
    name: `sync keys and constraints against ${backend.name}`,
    ignore: backend.ignoreReason !== undefined,
    async fn(t) {
      const pair = await backend.pair();
      try {
        await t.step("a GENERATED ALWAYS identity key is inserted and updated", async () => {
          const ddl =
            `CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label text);`;
          await pair.owner.exec(ddl + `INSERT INTO ident (label) VALUES ('a'), ('b'), ('c');`);
          await pair.destination.exec(ddl + `INSERT INTO ident (label) VALUES ('a'), ('stale');`);
          const table = { name: "public.ident", primary_key: ["id"] };
          const report = only((await attempt(pair, [table])).reports, "public.ident");
          assert.equal(report.status, "applied", report.error);
          assert.deepEqual([report.inserts, report.updates], [1, 1]);
          assert.equal(
            await fingerprint(pair.destination, "ident", "id"),
            await fingerprint(pair.owner, "ident", "id"),
          );
        });

        await t.step("two rows that swap a DEFERRABLE UNIQUE value are updated", async () => {
          // A plain UNIQUE is checked row by row inside one UPDATE: see docs/sync.md.
          const ddl =
            `CREATE TABLE swap (id int PRIMARY KEY, code text NOT NULL UNIQUE DEFERRABLE);`;
          await pair.owner.exec(ddl + `INSERT INTO swap VALUES (1, 'b'), (2, 'a');`);
          await pair.destination.exec(ddl + `INSERT INTO swap VALUES (1, 'a'), (2, 'b');`);
          const table = { name: "public.swap", primary_key: ["id"] };
          const report = only((await attempt(pair, [table])).reports, "public.swap");
          assert.equal(report.status, "applied", report.error);
          assert.equal(
            await fingerprint(pair.destination, "swap", "id"),
            await fingerprint(pair.owner, "swap", "id"),
          );
        });

        await t.step("a misspelt exclude_columns entry is refused", async () => {
          const ddl = `CREATE TABLE excl (id int PRIMARY KEY, label text, updated_at timestamptz);`;
          await pair.owner.exec(ddl + `INSERT INTO excl VALUES (1, 'a', '2020-01-01');`);
          await pair.destination.exec(ddl + `INSERT INTO excl VALUES (1, 'a', '2024-06-01');`);
          const table = { name: "public.excl", primary_key: ["id"], exclude_columns: ["updated"] };
          const { config, databases } = pair.connect([table]);
          try {
            await assert.rejects(runAttempt(config, databases, { dryRun: false, log: () => {} }));
          } finally {
            await Promise.all([...databases.values()].map((db) => db.close()));
          }
          const [kept] = await pair.destination.column(`SELECT updated_at::date::text FROM excl`);
          assert.equal(kept, "2024-06-01");
        });
        await t.step(
          "an update pointing at a row the same sync inserts applies (DEFERRABLE foreign key)",
          async () => {
            const ddl = `CREATE TABLE category (
            id int PRIMARY KEY, parent_id int REFERENCES category DEFERRABLE);`;
            await pair.owner.exec(ddl + `INSERT INTO category VALUES (2, NULL), (1, 2);`);
            await pair.destination.exec(ddl + `INSERT INTO category VALUES (1, NULL);`);
            const table = { name: "public.category", primary_key: ["id"] };
            const report = only((await attempt(pair, [table])).reports, "public.category");
            assert.equal(report.status, "applied", report.error);
            assert.equal(
              await fingerprint(pair.destination, "category", "id"),
              await fingerprint(pair.owner, "category", "id"),
            );
          },
        );

        await t.step({
          name: "a citext key equal but spelt in another case is the same row",
          // PGlite is started without the citext extension.
          ignore: backend.name !== "postgres",
          fn: async () => {
            const ddl = `CREATE EXTENSION IF NOT EXISTS citext;
              CREATE TABLE email_domain (domain citext PRIMARY KEY, label text);`;
            await pair.owner.exec(ddl + `INSERT INTO email_domain VALUES ('Example.com', 'x');`);
            await pair.destination.exec(
              ddl + `INSERT INTO email_domain VALUES ('example.com', 'x');`,
            );
            const table = { name: "public.email_domain", primary_key: ["domain"] };
            const report = only((await attempt(pair, [table])).reports, "public.email_domain");
            assert.equal(report.status, "applied", report.error);
            assert.deepEqual([report.inserts, report.updates, report.deletes], [0, 1, 0]);
            assert.deepEqual(
              await pair.destination.column(`SELECT domain::text FROM email_domain`),
              ["Example.com"],
            );
          },
        });
      } finally {
        await pair.close();
      }
    },
  });
}
