/**
 * @module A table the destination's own constraints refuse fails with what PostgreSQL said about
 * it: the constraint and, from its DETAIL, the key columns, so the operator can find the row;
 * the row's values stay out of the report and the log, as all row data does.
 */
import assert from "node:assert/strict";
import { runAttempt } from "../sync/run_attempt.ts";
import { BACKENDS, collectLog, type Pair } from "./sync_fixtures.ts";

async function attempt(pair: Pair, tables: unknown[]) {
  const { config, databases } = pair.connect(tables);
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
    name:
      `schema drift: a constraint only at the destination fails naming the column, never the row's values (${backend.name})`,
    ignore: backend.ignoreReason !== undefined,
    async fn(t) {
      const pair = await backend.pair();
      try {
        await t.step("a unique index only at the destination", async () => {
          const ddl = `CREATE TABLE course (id int PRIMARY KEY, code text NOT NULL);`;
          await pair.owner.exec(ddl + `INSERT INTO course VALUES (1, 'MATH-1'), (2, 'MATH-1');`);
          await pair.destination.exec(ddl + `CREATE UNIQUE INDEX course_code ON course (code);`);
          const { reports, lines } = await attempt(pair, [
            { name: "public.course", primary_key: ["id"] },
          ]);
          const [report] = reports;
          assert.equal(report.status, "failed");
          assert.match(report.error ?? "", /"course_code"/);
          // Which column: PostgreSQL's DETAIL, "Key (code)=(MATH-1) already exists.", without
          // the row's value, which may be an email or a token.
          assert.match(report.error ?? "", /: Key \(code\)=\(…\) already exists\.$/);
          assert.ok(lines.some((line) => line.includes("Key (code)=(…)")), lines.join("\n"));
          assert.ok(!lines.join("\n").includes("MATH-1"), "a row's value in the log");
          assert.doesNotMatch(report.error ?? "", /MATH-1/);
          assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM course`), ["0"]);
        });

        await t.step("a CHECK constraint only at the destination", async () => {
          const ddl = `CREATE TABLE grade (id int PRIMARY KEY, points int);`;
          await pair.owner.exec(ddl + `INSERT INTO grade VALUES (1, 50), (2, 150);`);
          await pair.destination.exec(
            ddl + `ALTER TABLE grade ADD CONSTRAINT grade_points CHECK (points <= 100);`,
          );
          const [report] = (await attempt(pair, [{ name: "public.grade", primary_key: ["id"] }]))
            .reports;
          assert.equal(report.status, "failed");
          assert.match(report.error ?? "", /"grade_points"/);
          // Its DETAIL, "Failing row contains (2, 150).", is the row itself: left out.
          assert.doesNotMatch(report.error ?? "", /150/);
          assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM grade`), ["0"]);
        });
      } finally {
        await pair.close();
      }
    },
  });
}
