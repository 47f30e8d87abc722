import assert from "node:assert/strict";
import fc from "fast-check";
import { runAttempt } from "../sync/run_attempt.ts";
import { BACKENDS } from "./sync_fixtures.ts";

/** One table per first-level strategy: integer buckets, owner-key buckets, composite ranges. */
const TABLES = [
  {
    name: "t_int",
    ddl: "CREATE TABLE t_int (id int PRIMARY KEY, g int NOT NULL, v text)",
    key: "g",
    order: "id",
    row: (g: string) => `SELECT ${g}, ${g}, 'v' || ${g}`,
    config: { name: "t_int", primary_key: ["id"], delete_missing: true },
  },
  {
    name: "t_text",
    ddl: "CREATE TABLE t_text (k text PRIMARY KEY, g int NOT NULL, v text)",
    key: "g",
    order: `k COLLATE "C"`,
    row: (g: string) => `SELECT (ARRAY['a', 'B', 'é', '_', 'Z'])[${g} % 5 + 1] || ${g}, ${g}, 'v'`,
    config: { name: "t_text", primary_key: ["k"], delete_missing: true },
  },
  {
    name: "t_comp",
    // An ICU collation orders 'Y' and 'x' differently from C, so the explicit COLLATE "C" path runs.
    ddl: `CREATE TABLE t_comp (
      a text COLLATE "und-x-icu", b int, g int NOT NULL, v text, PRIMARY KEY (a, b))`,
    key: "g",
    order: `a COLLATE "C", b`,
    row: (g: string) => `SELECT (ARRAY['x', 'Y', 'ü'])[${g} % 3 + 1], ${g} / 3, ${g}, 'v'`,
    config: { name: "t_comp", primary_key: ["a", "b"], delete_missing: true },
  },
];

const ROWS = 200;

const drift = fc.record({
  wipe: fc.constantFrom("none", "none", "none", "destination", "owner"),
  ops: fc.array(
    fc.record({
      op: fc.constantFrom("update", "delete", "insert", "null"),
      g: fc.integer({ min: 1, max: ROWS }),
    }),
    // "max": without it fast-check's default size keeps arrays to 10 elements, whatever maxLength says.
    { maxLength: 40, size: "max" },
  ),
});

function driftSql(table: (typeof TABLES)[number], ops: { op: string; g: number }[]) {
  return ops.map(({ op, g }) => {
    switch (op) {
      case "update":
        return `UPDATE ${table.name} SET v = coalesce(v, '') || '!' WHERE g = ${g};`;
      case "null":
        return `UPDATE ${table.name} SET v = NULL WHERE g = ${g};`;
      case "delete":
        return `DELETE FROM ${table.name} WHERE g = ${g};`;
      default:
        return `INSERT INTO ${table.name} ${table.row(String(g + 10_000))} ON CONFLICT DO NOTHING;`;
    }
  }).join("\n");
}

for (const backend of BACKENDS) {
  Deno.test({
    name: `runAttempt() brings any drift in line through every diff path (${backend.name})`,
    ignore: backend.ignoreReason !== undefined,
    async fn() {
      const pair = await backend.pair();
      try {
        for (const side of [pair.owner, pair.destination]) {
          await side.exec(TABLES.map((t) => t.ddl).join(";\n"));
        }
        const fingerprints = (side: typeof pair.owner) =>
          Promise.all(TABLES.map((t) =>
            side.column(
              `SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY ${t.order})), '')
               FROM ${t.name} AS x`,
            ).then(([d]) => d)
          ));
        const { config, databases } = pair.connect(TABLES.map((t) => t.config), {
          max_delete_ratio: 1,
        });
        const segments = { firstSegmentRows: 8, fanout: 2, leafRows: 2, segmentsPerStatement: 16 };
        await fc.assert(
          fc.asyncProperty(drift, async ({ wipe, ops }) => {
            const seed = TABLES.map((t) =>
              `TRUNCATE ${t.name}; INSERT INTO ${t.name} ${
                t.row("g")
              } FROM generate_series(1, ${ROWS}) AS g;`
            ).join("\n");
            await pair.owner.exec(seed);
            await pair.destination.exec(seed + TABLES.map((t) => driftSql(t, ops)).join("\n"));
            if (wipe !== "none") {
              await pair[wipe].exec(TABLES.map((t) => `TRUNCATE ${t.name};`).join(""));
            }
            const options = { dryRun: false, log: () => {}, segments, retryDelayMs: 1 };
            const first = await runAttempt(config, databases, options);
            for (const report of first) assert.equal(report.error, undefined);
            assert.deepEqual(
              await fingerprints(pair.destination),
              await fingerprints(pair.owner),
            );
            const second = await runAttempt(config, databases, options);
            assert.deepEqual(second.map((r) => r.status), TABLES.map(() => "in_sync"));
          }),
          { numRuns: 15 },
        );
      } finally {
        await pair.close();
      }
    },
  });
}
