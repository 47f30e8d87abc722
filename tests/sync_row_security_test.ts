/**
 * @module Row-level security must not make the sync read or write a subset of a table: a policy
 * that hides rows from the sync login is a failure that names the table, never a plan.
 */
import assert from "node:assert/strict";
import { parseSyncConfig } from "../sync/config.ts";
import { openDatabase } from "../sync/database.ts";
import { runAttempt } from "../sync/run_attempt.ts";
import { BACKENDS, collectLog } from "./sync_fixtures.ts";

const backend = BACKENDS.find((b) => b.name === "postgres")!;

/** `url` reached as `role`. */
function as(url: string, role: string): string {
  const out = new URL(url);
  out.username = role;
  return out.toString();
}

Deno.test({
  name: "row-level security: rows a policy hides from the sync login are not deleted or misplanned",
  // Needs roles, which PGlite over one socket cannot log in as.
  ignore: backend.ignoreReason !== undefined,
  async fn(t) {
    const pair = await backend.pair();
    const role = `sync_${crypto.randomUUID().slice(0, 8)}`;
    async function attempt(urls: { us: string; au: string }, table: string) {
      const config = parseSyncConfig({
        owner: "us",
        databases: urls,
        tables: [{ name: table, primary_key: ["id"], delete_missing: true }],
      });
      const databases = new Map([
        ["us", openDatabase("us", urls.us)],
        ["au", openDatabase("au", urls.au)],
      ]);
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
    // Roles belong to the server, which holds both databases.
    await pair.owner.exec(`CREATE ROLE ${role} LOGIN`);
    try {
      await t.step(
        "data loss: a policy at the owner hides 5 of 100 rows, and the destination loses them",
        async () => {
          const ddl = `CREATE TABLE tenant_plan (id int PRIMARY KEY, tenant text NOT NULL);
            INSERT INTO tenant_plan
              SELECT g, CASE WHEN g <= 5 THEN 'internal' ELSE 'public' END
              FROM generate_series(1, 100) g;`;
          // The owner's sync login reads through a policy (say, one written for the app's roles
          // with a USING clause that the sync login also falls under). Five rows are within the
          // default max_delete_ratio of 0.1.
          await pair.owner.exec(
            ddl + `GRANT SELECT ON tenant_plan TO ${role};
              ALTER TABLE tenant_plan ENABLE ROW LEVEL SECURITY;
              CREATE POLICY app_only ON tenant_plan USING (tenant <> 'internal');`,
          );
          await pair.destination.exec(ddl);
          const [report] = await attempt(
            { us: as(pair.owner.url, role), au: pair.destination.url },
            "public.tenant_plan",
          );
          // The owner still has all 100 rows: nothing may be deleted at the destination.
          assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM tenant_plan`), [
            "100",
          ]);
          assert.equal(report.status, "failed");
          assert.equal(report.deletes, 0);
          assert.match(report.error ?? "", /row-level security.*"tenant_plan"/);
        },
      );

      await t.step(
        "a policy at the destination fails with the policy named, not a duplicate key",
        async () => {
          const ddl = `CREATE TABLE tenant_note (id int PRIMARY KEY, tenant text NOT NULL);
            INSERT INTO tenant_note
              SELECT g, CASE WHEN g <= 5 THEN 'internal' ELSE 'public' END
              FROM generate_series(1, 100) g;`;
          await pair.owner.exec(ddl + `UPDATE tenant_note SET tenant = 'moved' WHERE id = 1;`);
          await pair.destination.exec(
            ddl + `GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_note TO ${role};
              ALTER TABLE tenant_note ENABLE ROW LEVEL SECURITY;
              CREATE POLICY app_only ON tenant_note USING (tenant <> 'internal');`,
          );
          const [report] = await attempt(
            { us: pair.owner.url, au: as(pair.destination.url, role) },
            "public.tenant_note",
          );
          assert.equal(report.status, "failed");
          assert.match(report.error ?? "", /row-level security.*"tenant_note"/);
          assert.deepEqual(
            await pair.destination.column(`SELECT tenant FROM tenant_note WHERE id = 1`),
            ["internal"],
          );
        },
      );
    } finally {
      for (const side of [pair.owner, pair.destination]) {
        await side.exec(`DROP OWNED BY ${role}`);
      }
      await pair.owner.exec(`DROP ROLE ${role}`);
      await pair.close();
    }
  },
});
