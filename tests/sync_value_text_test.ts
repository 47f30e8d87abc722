/** @module Values keep the text their readers see, including what a `::text` cast would drop. */
import assert from "node:assert/strict";
import { runAttempt } from "../sync/run_attempt.ts";
import { BACKENDS, collectLog, fingerprint, type Pair } from "./sync_fixtures.ts";

async function attempt(pair: Pair, tables: unknown[]) {
  const { config, databases } = pair.connect(tables);
  try {
    return await runAttempt(config, databases, {
      dryRun: false,
      log: collectLog().log,
      retryDelayMs: 1,
    });
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
  }
}

for (const backend of BACKENDS) {
  Deno.test({
    name: `sync value text: an unbounded bpchar keeps its trailing blanks (${backend.name})`,
    ignore: backend.ignoreReason !== undefined,
    async fn(t) {
      const pair = await backend.pair();
      try {
        const ddl = `CREATE DOMAIN code AS bpchar;
          CREATE TABLE fixed_code (id int PRIMARY KEY, raw bpchar, coded code, padded char(6));`;
        await pair.owner.exec(
          ddl + `INSERT INTO fixed_code VALUES (1, 'AB  ', 'X ', 'p'), (2, 'CD', 'Y', NULL);`,
        );
        await pair.destination.exec(ddl);
        const table = { name: "public.fixed_code", primary_key: ["id"] };
        const readers = `SELECT id || ':' || octet_length(raw) || ':' || octet_length(coded)
          FROM fixed_code ORDER BY id`;

        await t.step("a first sync copies 'AB  ' as 'AB  ', not 'AB'", async () => {
          const [report] = await attempt(pair, [table]);
          assert.equal(report.status, "applied", report.error);
          assert.deepEqual(await pair.destination.column(readers), ["1:4:2", "2:2:1"]);
          assert.equal(
            await fingerprint(pair.destination, "fixed_code", "id"),
            await fingerprint(pair.owner, "fixed_code", "id"),
          );
        });

        await t.step(
          "blanks lost at the destination are a difference the sync repairs",
          async () => {
            await pair.destination.exec(
              `UPDATE fixed_code SET raw = 'AB', coded = 'X' WHERE id = 1`,
            );
            const [report] = await attempt(pair, [table]);
            assert.equal(report.status, "applied", report.error);
            assert.equal(report.updates, 1);
            assert.deepEqual(await pair.destination.column(readers), ["1:4:2", "2:2:1"]);
            const [again] = await attempt(pair, [table]);
            assert.equal(again.status, "in_sync", again.error);
          },
        );
      } finally {
        await pair.close();
      }
    },
  });
}
