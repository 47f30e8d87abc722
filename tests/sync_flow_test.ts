import assert from "node:assert/strict";
import { runAttempt, type TableReport } from "../sync/run_attempt.ts";
import { SyncRefusedError } from "../sync/errors.ts";
import {
  attemptOn,
  BACKENDS,
  collectLog,
  fingerprint,
  type Pair,
  QUICKEST_BACKEND,
} from "./sync_fixtures.ts";

const KINDS_TABLE = `
  CREATE TABLE kinds (
    id integer PRIMARY KEY, label text, doc jsonb, raw_doc json, at timestamptz, local_at timestamp,
    amount numeric(12,4), blob bytea, ratio float8, tags text[]
  );`;

/** Rows meant to break a driver that converts through JS Date, JSON.parse or floats. */
const KINDS_ROWS = `
  INSERT INTO kinds VALUES
    (1, '', '{"b": 1, "a": {"z": [1, 2], "y": null}}', '{"b":1,  "a":2}', '2024-02-29 23:59:59.123456+00',
      '1999-12-31 23:59:59.000001', 1.5, '\\x00ff10', 0.1, ARRAY['x', NULL, '']),
    (2, NULL, '"just a string"', 'null', '0001-01-01 00:00:00+00', NULL, -0.0001, '\\x', 1e308, '{}'),
    (3, 'null', 'null', '[1, 2.50]', '2262-04-11 23:47:16.854775+00', '2024-01-01', 12345678.9999, NULL,
      'NaN', NULL),
    (4, 'Zürich — 東京 🚀 "quoted" \\ back', '{"emoji": "🚀", "n": 1.10}', '{}', NULL, NULL, 0, '\\x5c78',
      '-Infinity', ARRAY['é']);
  INSERT INTO kinds
    SELECT g, 'row ' || g, jsonb_build_object('g', g), '{"g": 1}', '2024-01-01 00:00:00+00'::timestamptz + g * interval '1.000001 second',
      NULL, g / 3.0, decode(lpad(to_hex(g), 6, '0'), 'hex'), g / 7.0, NULL
    FROM generate_series(5, 300) AS g;`;

/** Destination drift covering each difference the hash must see. */
const KINDS_DRIFT = `
  DELETE FROM kinds WHERE id IN (2, 50, 51, 52);
  UPDATE kinds SET label = NULL WHERE id = 1;          -- '' became NULL
  UPDATE kinds SET label = NULL WHERE id = 3;          -- 'null' became NULL
  UPDATE kinds SET doc = '{"a": {"y": null, "z": [1, 2]}, "b": 1}' WHERE id = 1; -- same jsonb
  UPDATE kinds SET raw_doc = '{"g":1}' WHERE id = 5;  -- json text differs (same as jsonb)
  UPDATE kinds SET at = at + interval '1 microsecond' WHERE id = 10;
  UPDATE kinds SET amount = 100.0000 WHERE id = 11;
  UPDATE kinds SET blob = '\\x00ff11' WHERE id = 12;
  UPDATE kinds SET label = 'Zurich' WHERE id = 4;
  UPDATE kinds SET tags = ARRAY['x', 'NULL', ''] WHERE id = 13;
  INSERT INTO kinds (id, label) VALUES (1000, 'only here'), (1001, 'only here too');`;

const KINDS_CONFIG = [{ name: "public.kinds", primary_key: ["id"], delete_missing: true }];

function only(reports: TableReport[], table: string): TableReport {
  const found = reports.filter((r) => r.table === table);
  assert.equal(found.length, 1, `expected one report for ${table}`);
  return found[0];
}

async function attempt(pair: Pair, tables: unknown[], options: {
  dryRun?: boolean;
  extra?: Record<string, unknown>;
  batchRows?: number;
  segments?: Parameters<typeof runAttempt>[2]["segments"];
} = {}) {
  const { config, databases } = pair.connect(tables, options.extra);
  const { lines, log } = collectLog();
  try {
    const reports = await runAttempt(config, databases, {
      dryRun: options.dryRun ?? false,
      log,
      batchRows: options.batchRows,
      segments: options.segments,
      retryDelayMs: 1,
    });
    return { reports, lines };
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
  }
}

/**
 * Runs `fn` while new connections to the destination start with `settings`, which change how
 * values print (an operator may pick them for the database's own readers); the sync pins its own
 * per transaction. PGlite has one session shared by every connection, so there the SETs on the
 * admin connection count.
 */
async function withDestinationSettings(
  pair: Pair,
  settings: Record<string, string>,
  fn: () => Promise<void>,
) {
  const [database] = await pair.destination.column(`SELECT current_database()`);
  const set = Object.entries(settings).map(([name, value]) =>
    `ALTER DATABASE "${database}" SET ${name} = '${value}'; SET ${name} = '${value}';`
  );
  await pair.destination.exec(set.join("\n"));
  try {
    await fn();
  } finally {
    await pair.destination.exec(`ALTER DATABASE "${database}" RESET ALL; RESET ALL`);
  }
}

for (const backend of BACKENDS) {
  Deno.test({
    name: `sync against ${backend.name}`,
    ignore: backend.ignoreReason !== undefined,
    async fn(t) {
      const pair = await backend.pair();
      try {
        await t.step(
          "runAttempt() applies inserts, updates and deletes so values survive byte-exactly",
          async () => {
            await pair.owner.exec(KINDS_TABLE + KINDS_ROWS);
            await pair.destination.exec(KINDS_TABLE + KINDS_ROWS + KINDS_DRIFT);
            assert.notEqual(
              await fingerprint(pair.destination, "kinds", "id"),
              await fingerprint(pair.owner, "kinds", "id"),
            );
            const { reports, lines } = await attempt(pair, KINDS_CONFIG);
            const report = only(reports, "public.kinds");
            assert.equal(report.status, "applied", report.error);
            // raw_doc of row 5 differs only as json text, which is what json readers see: updated.
            assert.deepEqual(
              [report.inserts, report.updates, report.deletes, report.extra],
              [4, 8, 2, 0],
            );
            assert.equal(report.owner_rows, 300);
            assert.equal(report.destination_rows, 298);
            assert.ok(report.bytes_read > 0);
            const logged = JSON.parse(lines.find((l) => l.includes('"msg":"table synced"'))!);
            assert.equal(logged.status, "applied");
            assert.equal(logged.inserts, 4);
            assert.equal(typeof logged.duration_ms, "number");

            assert.equal(
              await fingerprint(pair.destination, "kinds", "id"),
              await fingerprint(pair.owner, "kinds", "id"),
            );
            const values = await pair.destination.column(
              `SELECT concat_ws(' | ', (label IS NULL)::text, at AT TIME ZONE 'UTC', jsonb_typeof(doc), raw_doc::text,
               amount::text, encode(blob, 'hex'), ratio::text, tags::text)
             FROM kinds WHERE id IN (1, 2, 3) ORDER BY id`,
            );
            assert.deepEqual(values, [
              'false | 2024-02-29 23:59:59.123456 | object | {"b":1,  "a":2} | 1.5000 | 00ff10 | 0.1 | {x,NULL,""}',
              "true | 0001-01-01 00:00:00 | string | null | -0.0001 |  | 1e+308 | {}",
              "false | 2262-04-11 23:47:16.854775 | null | [1, 2.50] | 12345678.9999 | NaN",
            ]);
            const [unicode] = await pair.destination.column(`SELECT label FROM kinds WHERE id = 4`);
            assert.equal(unicode, 'Zürich — 東京 🚀 "quoted" \\ back');
          },
        );

        await t.step("runAttempt() changes nothing on a second run", async () => {
          const before = await fingerprint(pair.destination, "kinds", "id");
          const { reports } = await attempt(pair, KINDS_CONFIG);
          const report = only(reports, "public.kinds");
          assert.equal(report.status, "in_sync");
          assert.deepEqual([report.inserts, report.updates, report.deletes], [0, 0, 0]);
          assert.equal(await fingerprint(pair.destination, "kinds", "id"), before);
        });

        await t.step(
          "runAttempt() hashes the same whatever the destination's session settings",
          async () => {
            // New connections to the destination start with settings that change how timestamptz,
            // floats and intervals print; the sync pins its own per transaction. PGlite has one
            // session shared by every connection, so there the SETs on the admin connection count.
            const settings = {
              TimeZone: "Australia/Sydney",
              DateStyle: "SQL, DMY",
              extra_float_digits: "-3",
            };
            await withDestinationSettings(pair, settings, async () => {
              const { reports } = await attempt(pair, KINDS_CONFIG);
              const report = only(reports, "public.kinds");
              assert.equal(report.status, "in_sync", JSON.stringify(report));
            });
          },
        );

        await t.step("IntervalStyle iso_8601: interval keys and values stay in sync", async () => {
          const ddl = `CREATE TABLE plan_period (p interval PRIMARY KEY, grace interval, note text);
            INSERT INTO plan_period VALUES ('1 day', '2 hours', 'daily'),
              ('1 mon 2 days 03:00:00', '-1 day', 'odd'), ('1 year', NULL, 'yearly');`;
          await pair.owner.exec(ddl);
          await pair.destination.exec(ddl);
          await withDestinationSettings(pair, { IntervalStyle: "iso_8601" }, async () => {
            const { reports: [report] } = await attempt(pair, [
              { name: "public.plan_period", primary_key: ["p"], delete_missing: true },
            ]);
            assert.equal(report.status, "in_sync", JSON.stringify(report));
          });
        });

        await t.step("bytea_output escape: bytea values stay in sync", async () => {
          const ddl = `CREATE TABLE blob (id int PRIMARY KEY, b bytea);
            INSERT INTO blob VALUES (1, '\\x00ff'), (2, '\\x5c78'), (3, NULL), (4, 'plain');`;
          await pair.owner.exec(ddl);
          await pair.destination.exec(ddl);
          await withDestinationSettings(pair, { bytea_output: "escape" }, async () => {
            const { reports: [report] } = await attempt(pair, [
              { name: "public.blob", primary_key: ["id"] },
            ]);
            assert.equal(report.status, "in_sync", JSON.stringify(report));
          });
        });

        await t.step("runAttempt() with dryRun reports the plan and writes nothing", async () => {
          await pair.destination.exec(
            `UPDATE kinds SET label = 'drift' WHERE id < 20; DELETE FROM kinds WHERE id = 30`,
          );
          const before = await fingerprint(pair.destination, "kinds", "id");
          const { reports } = await attempt(pair, KINDS_CONFIG, { dryRun: true });
          const report = only(reports, "public.kinds");
          assert.equal(report.status, "planned");
          assert.equal(report.dry_run, true);
          assert.deepEqual([report.inserts, report.updates, report.deletes], [1, 19, 0]);
          assert.equal(await fingerprint(pair.destination, "kinds", "id"), before);
        });

        await t.step("runAttempt() rolls a table back when a write fails mid-apply", async () => {
          // The destination refuses one of the rows the owner has; earlier batches already ran.
          await pair.destination.exec(
            `ALTER TABLE kinds ADD CONSTRAINT no_forbidden CHECK (label IS DISTINCT FROM 'forbidden')`,
          );
          await pair.owner.exec(`INSERT INTO kinds (id, label) VALUES (2000, 'forbidden')`);
          const before = await fingerprint(pair.destination, "kinds", "id");
          const { reports } = await attempt(pair, KINDS_CONFIG, { batchRows: 5 });
          const report = only(reports, "public.kinds");
          assert.equal(report.status, "failed");
          assert.match(report.error!, /no_forbidden/);
          assert.equal(await fingerprint(pair.destination, "kinds", "id"), before);
          await pair.owner.exec(`DELETE FROM kinds WHERE id = 2000`);
          const retry = only((await attempt(pair, KINDS_CONFIG)).reports, "public.kinds");
          assert.equal(retry.status, "applied", retry.error);
        });

        await t.step(
          "runAttempt() refuses deletes past max_delete_ratio and writes nothing",
          async () => {
            await pair.destination.exec(
              `INSERT INTO kinds (id, label) SELECT g, 'extra' FROM generate_series(5000, 5040) AS g;
             UPDATE kinds SET label = 'drift' WHERE id = 7`,
            );
            const before = await fingerprint(pair.destination, "kinds", "id");
            const { reports } = await attempt(pair, KINDS_CONFIG);
            const report = only(reports, "public.kinds");
            assert.equal(report.status, "refused");
            assert.equal(
              report.error,
              'Cannot sync table "public.kinds" to "au": 41 deletes of 341 rows exceed max_delete_ratio 0.1',
            );
            assert.equal(await fingerprint(pair.destination, "kinds", "id"), before);
            const allowed = await attempt(pair, KINDS_CONFIG, { extra: { max_delete_ratio: 0.2 } });
            assert.equal(only(allowed.reports, "public.kinds").deletes, 41);
          },
        );

        await t.step(
          "runAttempt() syncs composite keys in C order and leaves extra rows when delete_missing is off",
          async () => {
            // The owner sorts country with ICU ('au' < 'AU'), the destination bytewise ('AU' < 'au'):
            // only an explicit COLLATE "C" on both sides puts the same keys in the same segments.
            const ddl = (collation: string) =>
              `CREATE TABLE curriculum (
                country text ${collation}, code varchar(20), title text NOT NULL,
                updated_at timestamptz DEFAULT now(), PRIMARY KEY (country, code));`;
            const rows = `INSERT INTO curriculum (country, code, title, updated_at)
            SELECT c, k || g, 'Course ' || g, '2020-01-01' FROM unnest(ARRAY['au', 'AU', 'us', 'ü']) AS c,
              unnest(ARRAY['a', 'B', '_', 'é']) AS k, generate_series(1, 20) AS g;`;
            await pair.owner.exec(ddl(`COLLATE "und-x-icu"`) + rows);
            await pair.destination.exec(
              ddl("") + rows + `DELETE FROM curriculum WHERE code LIKE 'B1%';
              UPDATE curriculum SET title = 'Renamed', updated_at = now() WHERE code = 'é7';
              UPDATE curriculum SET updated_at = '2000-01-01' WHERE code = 'a3';
              INSERT INTO curriculum VALUES ('zz', 'local', 'Only here', now());`,
            );
            const tables = [{
              name: "public.curriculum",
              primary_key: ["country", "code"],
              exclude_columns: ["updated_at"],
            }];
            const { reports } = await attempt(pair, tables, {
              segments: { firstSegmentRows: 16, fanout: 4, leafRows: 4, segmentsPerStatement: 8 },
            });
            const report = only(reports, "public.curriculum");
            assert.equal(report.status, "applied", report.error);
            assert.deepEqual(
              [report.inserts, report.updates, report.deletes, report.extra],
              [4 * 11, 4, 0, 1],
            );
            const project = `(SELECT country, code, title FROM curriculum WHERE country <> 'zz')`;
            const order = `country COLLATE "C", code COLLATE "C"`;
            assert.equal(
              await fingerprint(pair.destination, project, order),
              await fingerprint(pair.owner, project, order),
            );
            const [kept] = await pair.destination.column(
              `SELECT updated_at = '2000-01-01' FROM curriculum WHERE code = 'a3' AND country = 'au'`,
            );
            assert.equal(kept, "true", "excluded column must not be written");
            const [extra] = await pair.destination.column(
              `SELECT count(*) FROM curriculum WHERE country = 'zz'`,
            );
            assert.equal(extra, "1");
          },
        );

        await t.step({
          name: "runAttempt() retries a serialization failure within the attempt, then applies",
          // PGlite serves one session, so there is no concurrent writer to conflict with.
          ignore: backend.name !== "postgres",
          fn: async () => {
            const [want] = await pair.owner.column(`SELECT label FROM kinds WHERE id = 9`);
            await pair.destination.exec(`UPDATE kinds SET label = 'stale' WHERE id = 9`);
            // Another writer holds the row the sync must update and commits once the sync waits.
            const blocker = await pair.destination.admin.reserve();
            try {
              await blocker.unsafe(`BEGIN`);
              await blocker.unsafe(`UPDATE kinds SET label = 'locked' WHERE id = 9`);
              const running = attempt(pair, KINDS_CONFIG);
              const deadline = performance.now() + 20_000;
              while (true) {
                const [waiting] = await pair.owner.column(
                  `SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = 'vestibule-sync' AND wait_event_type = 'Lock'`,
                );
                if (waiting !== "0") break;
                if (performance.now() > deadline) throw new Error("The sync never waited");
                await new Promise((resolve) => setTimeout(resolve, 20));
              }
              await blocker.unsafe(`COMMIT`);
              const { reports, lines } = await running;
              const report = only(reports, "public.kinds");
              assert.equal(report.status, "applied", report.error);
              assert.equal(report.attempts, 2);
              assert.equal(report.updates, 1);
              assert.ok(
                lines.some((l) =>
                  l.includes("transient failure, retrying") &&
                  l.includes("could not serialize access due to concurrent update")
                ),
                lines.join("\n"),
              );
            } finally {
              blocker.release();
            }
            const [got] = await pair.destination.column(`SELECT label FROM kinds WHERE id = 9`);
            assert.equal(got, want);
          },
        });

        await t.step(
          "runAttempt() refuses a schema mismatch before writing any table",
          async () => {
            await pair.owner.exec(`CREATE TABLE bad (id int PRIMARY KEY, name text)`);
            await pair.destination.exec(`CREATE TABLE bad (id int PRIMARY KEY, name varchar(10))`);
            await pair.destination.exec(`UPDATE kinds SET label = 'drift again' WHERE id = 8`);
            const before = await fingerprint(pair.destination, "kinds", "id");
            const tables = [...KINDS_CONFIG, { name: "public.bad", primary_key: ["id"] }];
            const { config, databases } = pair.connect(tables);
            await assert.rejects(
              runAttempt(config, databases, { dryRun: false, log: () => {} }),
              (error: unknown) => {
                assert.ok(error instanceof SyncRefusedError);
                assert.equal(
                  error.message,
                  'Cannot sync table "public.bad": column "name" is text at "us" but character varying(10) at "au"',
                );
                return true;
              },
            );
            assert.equal(await fingerprint(pair.destination, "kinds", "id"), before);
          },
        );

        await t.step("runAttempt() names each kind of schema mismatch", async () => {
          await pair.owner.exec(`
            CREATE TABLE nokey (id int, name text);
            CREATE TABLE twokey (a int, b int, PRIMARY KEY (a, b));
            CREATE TABLE extra_col (id int PRIMARY KEY);
            CREATE TABLE only_owner (id int PRIMARY KEY);`);
          await pair.destination.exec(`
            CREATE TABLE nokey (id int, name text);
            CREATE TABLE twokey (a int, b int, PRIMARY KEY (b, a));
            CREATE TABLE extra_col (id int PRIMARY KEY, note text);`);
          const cases: [unknown, string][] = [
            [
              { name: "only_owner", primary_key: ["id"] },
              'Cannot sync table "public.only_owner": table is missing at "au"',
            ],
            [
              { name: "public.nokey", primary_key: ["id"] },
              'Cannot sync table "public.nokey": there is no primary key at "us"',
            ],
            [
              { name: "public.twokey", primary_key: ["a", "b"] },
              'Cannot sync table "public.twokey": primary key is ("b", "a") at "au" but the config says ("a", "b")',
            ],
            [
              { name: "public.extra_col", primary_key: ["id"] },
              'Cannot sync table "public.extra_col": column "note" is missing at "us"',
            ],
            [
              { name: "public.extra_col", primary_key: ["id"], columns: ["id", "note"] },
              'Cannot sync table "public.extra_col": column "note" is missing at "us"',
            ],
          ];
          for (const [table, message] of cases) {
            const { config, databases } = pair.connect([table]);
            await assert.rejects(
              runAttempt(config, databases, { dryRun: false, log: () => {} }),
              (error: unknown) => {
                assert.ok(error instanceof SyncRefusedError, String(error));
                assert.equal(error.message, message);
                return true;
              },
            );
          }
        });
        await t.step(
          "a json value spelt otherwise (1e2 vs 100) is updated to the owner's spelling",
          async () => {
            // Equal as jsonb, but json readers see the text: doc->>'price' is 1e2 or 100.
            const ddl = `CREATE TABLE json_spelling (id int PRIMARY KEY, doc json);`;
            await pair.owner.exec(ddl + `INSERT INTO json_spelling VALUES (1, '{"price": 1e2}');`);
            await pair.destination.exec(
              ddl + `INSERT INTO json_spelling VALUES (1, '{"price": 100}');`,
            );
            const table = { name: "public.json_spelling", primary_key: ["id"] };
            const report = only((await attempt(pair, [table])).reports, "public.json_spelling");
            assert.equal(report.status, "applied", report.error);
            assert.equal(report.updates, 1);
            assert.deepEqual(
              await pair.destination.column(`SELECT doc->>'price' FROM json_spelling`),
              ["1e2"],
            );
          },
        );
        await t.step(
          "a key of an app's own type named interval or float8 is read as that type",
          async () => {
            // keyText() picked justify_interval() and the float form by the type's bare name:
            // justify_interval(app."interval") does not exist, and the table failed every run.
            const ddl = `CREATE SCHEMA IF NOT EXISTS app;
            CREATE TYPE app.interval AS ENUM ('month', 'year');
            CREATE TYPE app.float8 AS ENUM ('low', 'high');
            CREATE TABLE price (plan text, period app.interval, tier app.float8, cents int,
              PRIMARY KEY (plan, period, tier));`;
            await pair.owner.exec(
              ddl +
                `INSERT INTO price VALUES ('pro', 'month', 'low', 900), ('pro', 'year', 'high', 9000);`,
            );
            await pair.destination.exec(
              ddl + `INSERT INTO price VALUES ('pro', 'month', 'low', 800);`,
            );
            const table = { name: "public.price", primary_key: ["plan", "period", "tier"] };
            const report = only((await attempt(pair, [table])).reports, "public.price");
            assert.equal(report.status, "applied", report.error);
            assert.equal(
              await fingerprint(pair.destination, "price", "plan, period, tier"),
              await fingerprint(pair.owner, "price", "plan, period, tier"),
            );
          },
        );
        await t.step("a json value holding \\u0000 (which jsonb refuses) still syncs", async () => {
          const ddl = `CREATE TABLE json_nul (id int PRIMARY KEY, doc json);`;
          await pair.owner.exec(
            ddl + `INSERT INTO json_nul VALUES (1, '{"a":"x\\u0000y"}'), (2, '{}');`,
          );
          await pair.destination.exec(ddl);
          const table = { name: "public.json_nul", primary_key: ["id"] };
          const report = only((await attempt(pair, [table])).reports, "public.json_nul");
          assert.equal(report.status, "applied", report.error);
          assert.equal(report.inserts, 2);
          const again = only((await attempt(pair, [table])).reports, "public.json_nul");
          assert.equal(again.status, "in_sync", again.error);
        });
        await t.step(
          "a numeric key equal by value but written 1.0 and 1.00 is the same row",
          async () => {
            const ddl = `CREATE TABLE numeric_key (id numeric PRIMARY KEY, label text);`;
            await pair.owner.exec(
              ddl + `INSERT INTO numeric_key VALUES (1.0, 'owner'), (2, 'two');`,
            );
            await pair.destination.exec(ddl + `INSERT INTO numeric_key VALUES (1.00, 'stale');`);
            const table = { name: "public.numeric_key", primary_key: ["id"] };
            const report = only((await attempt(pair, [table])).reports, "public.numeric_key");
            assert.equal(report.status, "applied", report.error);
            assert.deepEqual([report.inserts, report.updates, report.deletes], [1, 1, 0]);
            assert.deepEqual(
              await pair.destination.column(
                `SELECT id || ' ' || label FROM numeric_key ORDER BY id`,
              ),
              ["1.0 owner", "2 two"],
            );
            const again = only((await attempt(pair, [table])).reports, "public.numeric_key");
            assert.equal(again.status, "in_sync", again.error);
          },
        );
        await t.step(
          "an unbounded bpchar keeps its trailing blanks ('AB  ', not 'AB')",
          async () => {
            // `bpchar::text` drops them; the readers of an unbounded bpchar (or a domain over it)
            // see them. char(n) pads anyway. A type of the app's own named bpchar is no bpchar:
            // read as bpcharout(app.bpchar), which does not exist, it failed the table.
            const ddl = `CREATE DOMAIN code AS bpchar;
              CREATE SCHEMA IF NOT EXISTS app;
              CREATE TYPE app.bpchar AS ENUM ('draft', 'live');
              CREATE DOMAIN app.stage AS app.bpchar;
              CREATE TABLE fixed_code (id int PRIMARY KEY, raw bpchar, coded code, padded char(6),
                state app.bpchar, stage app.stage);`;
            await pair.owner.exec(
              ddl + `INSERT INTO fixed_code VALUES (1, 'AB  ', 'X ', 'p', 'draft', 'live'),
                (2, 'CD', 'Y', NULL, 'live', NULL);`,
            );
            await pair.destination.exec(ddl);
            const table = { name: "public.fixed_code", primary_key: ["id"] };
            const readers = `SELECT id || ':' || octet_length(raw) || ':' || octet_length(coded)
            FROM fixed_code ORDER BY id`;
            const first = only((await attempt(pair, [table])).reports, "public.fixed_code");
            assert.equal(first.status, "applied", first.error);
            assert.deepEqual(await pair.destination.column(readers), ["1:4:2", "2:2:1"]);
            assert.equal(
              await fingerprint(pair.destination, "fixed_code", "id"),
              await fingerprint(pair.owner, "fixed_code", "id"),
            );
            // Blanks lost at the destination are a difference the sync sees and repairs.
            await pair.destination.exec(
              `UPDATE fixed_code SET raw = 'AB', coded = 'X' WHERE id = 1`,
            );
            const repaired = only((await attempt(pair, [table])).reports, "public.fixed_code");
            assert.equal(repaired.status, "applied", repaired.error);
            assert.equal(repaired.updates, 1);
            assert.deepEqual(await pair.destination.column(readers), ["1:4:2", "2:2:1"]);
            const again = only((await attempt(pair, [table])).reports, "public.fixed_code");
            assert.equal(again.status, "in_sync", again.error);
          },
        );
      } finally {
        await pair.close();
      }
    },
  });
}

Deno.test("runAttempt() refuses a column generated only at the destination, before any write", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    await pair.owner.exec(`CREATE TABLE priced (id int PRIMARY KEY, price int, total int);
      INSERT INTO priced VALUES (1, 10, 99), (2, 20, 77)`);
    await pair.destination.exec(`CREATE TABLE priced (id int PRIMARY KEY, price int,
      total int GENERATED ALWAYS AS (price * 2) STORED)`);
    const { config, databases } = pair.connect([{ name: "priced", primary_key: ["id"] }]);
    await assert.rejects(
      runAttempt(config, databases, { dryRun: false, log: () => {} }),
      (error: unknown) => {
        assert.ok(error instanceof SyncRefusedError, String(error));
        assert.equal(
          error.message,
          'Cannot sync table "public.priced": column "total" is generated at "au"',
        );
        return true;
      },
    );
    assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM priced`), ["0"]);
  } finally {
    await pair.close();
  }
});

Deno.test("runAttempt() syncs a text key collated otherwise at the destination without churning its rows", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    const seed = `INSERT INTO mixed SELECT l || n, 'x'
      FROM unnest(ARRAY['a', 'B', 'c', 'D', '_', 'z']) AS l, generate_series(100, 199) AS n;`;
    await pair.owner.exec(
      `CREATE TABLE mixed (k text PRIMARY KEY, label text, note text);` + seed +
        `UPDATE mixed SET label = 'changed' WHERE k LIKE '%5';`,
    );
    // The database orders k bytewise at the owner; the column's own ICU collation orders it here.
    await pair.destination.exec(
      `CREATE TABLE mixed (k text COLLATE "und-x-icu" PRIMARY KEY, label text, note text);` + seed +
        `UPDATE mixed SET note = 'keep';
         DELETE FROM mixed WHERE k LIKE '%7'; INSERT INTO mixed VALUES ('extra', 'x', 'keep');`,
    );
    const { config, databases } = pair.connect([{
      name: "mixed",
      primary_key: ["k"],
      exclude_columns: ["note"],
      delete_missing: true,
      max_delete_ratio: 1,
    }]);
    const reports = await runAttempt(config, databases, { dryRun: false, log: () => {} });
    assert.deepEqual(
      reports.map((r) => [r.error, r.inserts, r.updates, r.deletes]),
      [[undefined, 60, 60, 1]],
    );
    const rows = `SELECT string_agg(k || '=' || label, ',' ORDER BY k COLLATE "C") FROM mixed`;
    assert.deepEqual(await pair.destination.column(rows), await pair.owner.column(rows));
    // Rows the sync only compared keep the column it does not write.
    assert.deepEqual(
      await pair.destination.column(`SELECT count(*) FROM mixed WHERE note = 'keep'`),
      ["540"],
    );
  } finally {
    await pair.close();
  }
});

Deno.test("numeric keys 1, 10 and 100 stay three rows (trailing zeros of integers are not cut)", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    const schema = `CREATE TABLE price (id numeric PRIMARY KEY, name text NOT NULL)`;
    await pair.owner.exec(
      `${schema}; INSERT INTO price VALUES (1, 'one'), (10, 'ten'), (100, 'hundred'), (2.50, 'x')`,
    );
    await pair.destination.exec(`${schema}; INSERT INTO price VALUES (1, 'one'), (10, 'TEN')`);
    const [report] = await attemptOn(pair, [
      { name: "public.price", primary_key: ["id"], delete_missing: true },
    ]);
    assert.equal(report.error, undefined);
    const rows = `SELECT id::text || '=' || name FROM price ORDER BY id`;
    assert.deepEqual(await pair.destination.column(rows), await pair.owner.column(rows));
    assert.deepEqual([report.inserts, report.updates, report.deletes], [2, 1, 0]);
  } finally {
    await pair.close();
  }
});

Deno.test("a table whose only difference is rows to delete gets them deleted (delete_missing)", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    const schema = `CREATE TABLE kind (id int PRIMARY KEY, name text NOT NULL)`;
    await pair.owner.exec(
      `${schema}; INSERT INTO kind SELECT g, 'k' || g FROM generate_series(1, 20) g`,
    );
    await pair.destination.exec(
      `${schema}; INSERT INTO kind SELECT g, 'k' || g FROM generate_series(1, 21) g`,
    );
    const [report] = await attemptOn(pair, [
      { name: "public.kind", primary_key: ["id"], delete_missing: true },
    ]);
    assert.equal(report.status, "applied", JSON.stringify(report));
    assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM kind`), ["20"]);
  } finally {
    await pair.close();
  }
});

Deno.test("deletes past max_delete_ratio are reported refused, not failed", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    const schema = `CREATE TABLE kind (id int PRIMARY KEY, name text NOT NULL)`;
    await pair.owner.exec(`${schema}; INSERT INTO kind VALUES (1, 'a')`);
    await pair.destination.exec(`${schema}; INSERT INTO kind VALUES (1, 'a'), (2, 'b')`);
    const [report] = await attemptOn(pair, [
      { name: "public.kind", primary_key: ["id"], delete_missing: true, max_delete_ratio: 0.1 },
    ]);
    assert.equal(report.status, "refused", JSON.stringify(report));
    assert.match(report.error!, /exceed max_delete_ratio 0\.1/);
  } finally {
    await pair.close();
  }
});

Deno.test("excluding a column only the destinations have (a local updated_at) is accepted", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    await pair.owner.exec(
      `CREATE TABLE s (id int PRIMARY KEY, name text); INSERT INTO s VALUES (1, 'a')`,
    );
    await pair.destination.exec(
      `CREATE TABLE s (id int PRIMARY KEY, name text, updated_at timestamptz DEFAULT now())`,
    );
    const [report] = await attemptOn(pair, [
      { name: "public.s", primary_key: ["id"], exclude_columns: ["updated_at"] },
    ]);
    assert.equal(report.status, "applied", JSON.stringify(report));
    assert.deepEqual(await pair.destination.column(`SELECT name FROM s`), ["a"]);
  } finally {
    await pair.close();
  }
});
