/**
 * @module Row-level security must not make the sync read or write a subset of a table: a policy
 * that hides rows from the sync login is a failure that names the table, never a plan.
 */
import assert from "node:assert/strict";
import { asRole, attemptAt, BACKENDS } from "./sync_fixtures.ts";

const backend = BACKENDS.find((b) => b.name === "postgres")!;

Deno.test({
  name: "row-level security: rows a policy hides from the sync login are not deleted or misplanned",
  // Needs roles, which PGlite over one socket cannot log in as.
  ignore: backend.ignoreReason !== undefined,
  async fn(t) {
    const pair = await backend.pair();
    const role = `sync_${crypto.randomUUID().slice(0, 8)}`;
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
          const [report] = await attemptAt(
            { us: asRole(pair.owner.url, role), au: pair.destination.url },
            { name: "public.tenant_plan", primary_key: ["id"], delete_missing: true },
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
          const [report] = await attemptAt(
            { us: pair.owner.url, au: asRole(pair.destination.url, role) },
            { name: "public.tenant_note", primary_key: ["id"], delete_missing: true },
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
