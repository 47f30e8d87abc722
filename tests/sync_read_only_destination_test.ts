/**
 * @module A destination its operator made read-only (`default_transaction_read_only`, as for a
 * maintenance freeze or a fenced old primary) is not written by the sync.
 */
import assert from "node:assert/strict";
import { runAttempt } from "../sync/run_attempt.ts";
import { BACKENDS, collectLog } from "./sync_fixtures.ts";

const backend = BACKENDS.find((b) => b.name === "postgres")!;

Deno.test({
  name: "frozen region: a destination with default_transaction_read_only = on is not written",
  // PGlite serves one session, which a database setting never reaches.
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    const database = new URL(pair.destination.url).pathname.slice(1);
    try {
      const ddl = `CREATE TABLE frozen_kind (id int PRIMARY KEY, label text);`;
      await pair.owner.exec(ddl + `INSERT INTO frozen_kind VALUES (1, 'new'), (2, 'two');`);
      await pair.destination.exec(
        ddl + `INSERT INTO frozen_kind VALUES (1, 'old');
          ALTER DATABASE ${database} SET default_transaction_read_only = on;`,
      );
      const { config, databases } = pair.connect([
        { name: "public.frozen_kind", primary_key: ["id"] },
      ]);
      let reports;
      try {
        reports = await runAttempt(config, databases, {
          dryRun: false,
          log: collectLog().log,
          retryDelayMs: 1,
        });
      } finally {
        await Promise.all([...databases.values()].map((db) => db.close()));
      }
      assert.notEqual(reports[0].status, "applied");
      assert.match(reports[0].error ?? "", /read-only/);
      assert.deepEqual(
        await pair.destination.column(`SELECT id || ' ' || label FROM frozen_kind ORDER BY id`),
        ["1 old"],
      );
    } finally {
      await pair.destination.exec(
        `SET default_transaction_read_only = off;
         ALTER DATABASE ${database} RESET default_transaction_read_only;`,
      );
      await pair.close();
    }
  },
});
