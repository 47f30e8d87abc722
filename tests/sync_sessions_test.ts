/**
 * @module What the sync's own sessions leave behind at a destination: its time zone for the
 * destination's defaults, sequences past the synced ids, bounded statements for large rows, the
 * rows of one owner snapshot however the owner changes meanwhile, and an honest report when the
 * owner's connection is lost after the destination committed.
 */
import assert from "node:assert/strict";
import { parseSyncConfig } from "../sync/config.ts";
import { openDatabase } from "../sync/database.ts";
import { runAttempt, type TableReport } from "../sync/run_attempt.ts";
import { syncTable } from "../sync/sync_table.ts";
import { resolveTableSpec } from "../sync/table_spec.ts";
import {
  asRole,
  attemptAt,
  BACKENDS,
  collectLog,
  fingerprint,
  type Pair,
  QUICKEST_BACKEND,
} from "./sync_fixtures.ts";

async function attempt(pair: Pair, tables: unknown[]) {
  return await inLoop(pair, tables, (again) => again());
}

/**
 * Runs `fn` with attempts on one set of connections, as `deno task sync` keeps them from one
 * attempt to the next in loop mode; each closed after.
 */
async function inLoop<T>(
  pair: Pair,
  tables: unknown[],
  fn: (again: () => Promise<{ reports: TableReport[]; lines: string[] }>) => Promise<T>,
): Promise<T> {
  const { config, databases } = pair.connect(tables);
  try {
    return await fn(async () => {
      const { lines, log } = collectLog();
      const reports = await runAttempt(config, databases, { dryRun: false, log, retryDelayMs: 1 });
      return { reports, lines };
    });
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
  }
}

/** One table synced through syncTable with a small byte budget. */
async function budgeted(pair: Pair, table: Record<string, unknown>, batchBytes: number) {
  const { config, databases } = pair.connect([table]);
  const owner = databases.get("us")!;
  const destination = databases.get("au")!;
  try {
    const spec = await resolveTableSpec(config.tables[0], [owner, destination]);
    return await syncTable({ spec, config: config.tables[0] }, { owner, destination }, {
      dryRun: false,
      batchRows: 1000,
      batchBytes,
    });
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
  }
}

/**
 * A TCP relay to `target` that cuts the first connection on which the client sends a `COMMIT`,
 * before the server sees it: the owner's read-only transaction commits after the destination's.
 */
function cutAtFirstCommit(target: URL) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let cut = false;
  const relays: Promise<void>[] = [];
  const relay = async (client: Deno.Conn) => {
    const server = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
    open.add(client).add(server);
    const close = () => {
      for (const conn of [client, server]) {
        if (open.delete(conn)) conn.close();
      }
    };
    const copy = async (from: Deno.Conn, to: Deno.Conn, watch: boolean) => {
      const buffer = new Uint8Array(64 * 1024);
      try {
        while (true) {
          const n = await from.read(buffer);
          if (n === null) break;
          const chunk = buffer.subarray(0, n);
          // A query message ('Q', or the driver's 'P'arse) whose statement is a COMMIT.
          if (watch && !cut && new TextDecoder().decode(chunk).toLowerCase().includes("commit\0")) {
            cut = true;
            break;
          }
          await to.write(chunk);
        }
      } catch {
        // The other direction closed the sockets.
      }
      close();
    };
    await Promise.all([copy(client, server, true), copy(server, client, false)]);
  };
  const accepting = (async () => {
    for await (const conn of listener) relays.push(relay(conn).catch(() => conn.close()));
  })();
  const url = new URL(target);
  url.port = String((listener.addr as Deno.NetAddr).port);
  return {
    url: url.toString(),
    get cut() {
      return cut;
    },
    async close() {
      listener.close();
      await accepting;
      for (const conn of open) conn.close();
      open.clear();
      await Promise.all(relays);
    },
  };
}

for (const backend of BACKENDS) {
  Deno.test({
    name: `sync sessions at the destination (${backend.name})`,
    ignore: backend.ignoreReason !== undefined,
    async fn(t) {
      const pair = await backend.pair();
      try {
        await t.step(
          "the owner's connection lost after the destination committed: the report says what was written",
          async () => {
            const ddl = `CREATE TABLE lost (id int PRIMARY KEY, name text NOT NULL);`;
            await pair.owner.exec(ddl + `INSERT INTO lost VALUES (1, 'a'), (2, 'b'), (3, 'c');`);
            await pair.destination.exec(ddl + `INSERT INTO lost VALUES (1, 'a');`);
            const relay = cutAtFirstCommit(new URL(pair.owner.url));
            const config = parseSyncConfig({
              owner: "us",
              databases: { us: relay.url, au: pair.destination.url },
              tables: [{ name: "public.lost", primary_key: ["id"] }],
            });
            const databases = new Map([
              ["us", openDatabase("us", relay.url)],
              ["au", openDatabase("au", pair.destination.url)],
            ]);
            try {
              const { log } = collectLog();
              const [report] = await runAttempt(config, databases, {
                dryRun: false,
                log,
                retryDelayMs: 1,
              });
              assert.ok(relay.cut, "the relay never saw the owner's COMMIT");
              assert.equal(report.status, "applied", report.error);
              assert.equal(report.inserts, 2);
            } finally {
              await Promise.all([...databases.values()].map((db) => db.close()));
              await relay.close();
            }
            assert.equal(
              await fingerprint(pair.destination, "lost", "id"),
              await fingerprint(pair.owner, "lost", "id"),
            );
          },
        );

        await t.step(
          "the destination's defaults and triggers run in its own time zone, not the sync's UTC",
          async () => {
            const [database] = await pair.destination.column(`SELECT current_database()`);
            // PGlite serves one session to every connection: there the admin's SET is the one.
            await pair.destination.exec(
              `ALTER DATABASE "${database}" SET TimeZone = 'Australia/Sydney';
               SET TimeZone = 'Australia/Sydney'`,
            );
            try {
              const ddl = (extra: string) =>
                `CREATE TABLE zoned (id int PRIMARY KEY, at timestamptz NOT NULL${extra});`;
              await pair.owner.exec(
                ddl("") + `INSERT INTO zoned VALUES (1, '2026-01-02 03:04:05+00');`,
              );
              await pair.destination.exec(
                ddl(`, zone text DEFAULT current_setting('TimeZone')`) +
                  `INSERT INTO zoned (id, at) VALUES (2, '2026-01-01 00:00:00+00');`,
              );
              const zoned = [{
                name: "public.zoned",
                primary_key: ["id"],
                exclude_columns: ["zone"],
                delete_missing: true,
                max_delete_ratio: 1,
              }];
              const rows = () =>
                pair.destination.column(
                  `SELECT concat_ws(' ', id, at AT TIME ZONE 'UTC', zone) FROM zoned ORDER BY id`,
                );
              await inLoop(pair, zoned, async (again) => {
                const { reports } = await again();
                assert.equal(reports[0].status, "applied", reports[0].error);
                assert.deepEqual(await rows(), ["1 2026-01-02 03:04:05 Australia/Sydney"]);
                // The hash is still computed in UTC: a second run finds nothing to do.
                const { reports: second } = await again();
                assert.equal(second[0].status, "in_sync", second[0].error);
                // Loop mode keeps its connections: the sync's UTC is pinned for its own
                // transactions only, so a later attempt still reads the destination's zone.
                await pair.owner.exec(`INSERT INTO zoned VALUES (3, '2026-01-03 00:00:00+00');`);
                const { reports: third } = await again();
                assert.equal(third[0].status, "applied", third[0].error);
              });
              assert.deepEqual(await rows(), [
                "1 2026-01-02 03:04:05 Australia/Sydney",
                "3 2026-01-03 00:00:00 Australia/Sydney",
              ]);
            } finally {
              await pair.destination.exec(`ALTER DATABASE "${database}" RESET ALL; RESET ALL`);
            }
          },
        );

        await t.step(
          "identity and serial sequences at the destination move past the synced ids, never back",
          async () => {
            const ddl =
              `CREATE TABLE by_default (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text);
              CREATE TABLE always (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);
              CREATE TABLE with_serial (id serial PRIMARY KEY, name text);
              CREATE TABLE ahead (id serial PRIMARY KEY, name text);`;
            const rows = (table: string) =>
              `INSERT INTO ${table} (name) SELECT 'owner ' || g FROM generate_series(1, 3) AS g;`;
            await pair.owner.exec(
              ddl + rows("by_default") + rows("always") + rows("with_serial") + rows("ahead"),
            );
            // The destination inserted locally past the owner's ids: its sequence stays ahead.
            await pair.destination.exec(ddl + `SELECT setval('ahead_id_seq', 100);`);
            const tables = ["by_default", "always", "with_serial", "ahead"];
            const { reports } = await attempt(
              pair,
              tables.map((name) => ({ name: `public.${name}`, primary_key: ["id"] })),
            );
            for (const report of reports) assert.equal(report.status, "applied", report.error);
            // A local insert after a failover: the next id is free.
            const next = await Promise.all(tables.map(async (table) => {
              const [id] = await pair.destination.column(
                `INSERT INTO ${table} (name) VALUES ('local') RETURNING id`,
              );
              return id;
            }));
            assert.deepEqual(next, ["4", "4", "4", "101"]);
          },
        );

        await t.step(
          "rows of a large table go in statements bounded by bytes, not only by row count",
          async () => {
            const ddl = `CREATE TABLE wide (id int PRIMARY KEY, body text NOT NULL);`;
            // 40 rows of 30,000 characters: under a 100,000-byte budget, at most 4 per statement.
            await pair.owner.exec(
              ddl +
                `INSERT INTO wide SELECT g, repeat(chr(97 + g % 26), 30000) FROM generate_series(1, 40) AS g;`,
            );
            await pair.destination.exec(ddl);
            const { config, databases } = pair.connect([{
              name: "public.wide",
              primary_key: ["id"],
            }]);
            const owner = databases.get("us")!;
            const destination = databases.get("au")!;
            try {
              const spec = await resolveTableSpec(config.tables[0], [owner, destination]);
              const run = async () => {
                const steps: number[] = [];
                let written = 0;
                const outcome = await syncTable({ spec, config: config.tables[0] }, {
                  owner,
                  destination,
                }, {
                  dryRun: false,
                  batchRows: 1000,
                  batchBytes: 100_000,
                  onProgress: (p) => {
                    const done = p.inserted + p.updated;
                    steps.push(done - written);
                    written = done;
                  },
                });
                return { outcome, steps };
              };
              // A first sync streams whole key ranges.
              const first = await run();
              assert.equal(first.outcome.inserts, 40);
              assert.ok(first.steps.every((n) => n >= 1 && n <= 4), String(first.steps));
              assert.equal(first.steps.reduce((a, b) => a + b), 40);
              // Later ones read rows by key.
              await pair.owner.exec(`UPDATE wide SET body = upper(body) WHERE id % 2 = 0`);
              await pair.destination.exec(`DELETE FROM wide WHERE id > 30`);
              const second = await run();
              assert.deepEqual([second.outcome.updates, second.outcome.inserts], [15, 10]);
              assert.ok(second.steps.every((n) => n >= 1 && n <= 4), String(second.steps));
              assert.equal(second.steps.reduce((a, b) => a + b), 25);
            } finally {
              await Promise.all([...databases.values()].map((db) => db.close()));
            }
            assert.equal(
              await fingerprint(pair.destination, "wide", "id"),
              await fingerprint(pair.owner, "wide", "id"),
            );
          },
        );

        await t.step(
          "a sequence OWNED BY a text column (invoice codes) does not fail the table",
          async () => {
            // 'INV-' || nextval(...) with the sequence owned by the column, so it goes with it.
            const ddl = `CREATE SEQUENCE invoice_code_seq;
              CREATE TABLE invoice (code text PRIMARY KEY
                DEFAULT 'INV-' || nextval('invoice_code_seq'), amount int NOT NULL);
              ALTER SEQUENCE invoice_code_seq OWNED BY invoice.code;`;
            await pair.owner.exec(
              ddl + `INSERT INTO invoice (amount) SELECT g FROM generate_series(1, 3) g;`,
            );
            await pair.destination.exec(ddl);
            const { reports } = await attempt(pair, [{
              name: "public.invoice",
              primary_key: ["code"],
            }]);
            assert.equal(reports[0].status, "applied", reports[0].error);
            assert.equal(
              await fingerprint(pair.destination, "invoice", "code"),
              await fingerprint(pair.owner, "invoice", "code"),
            );
          },
        );

        await t.step(
          "a column fed by a sequence it does not own (DEFAULT nextval) is moved past too",
          async () => {
            const ddl = `CREATE SEQUENCE ticket_seq;
              CREATE TABLE ticket (id bigint PRIMARY KEY DEFAULT nextval('ticket_seq'),
                name text);`;
            await pair.owner.exec(
              ddl + `INSERT INTO ticket (name) SELECT 'o' || g FROM generate_series(1, 3) g;`,
            );
            await pair.destination.exec(ddl);
            const { reports } = await attempt(pair, [{
              name: "public.ticket",
              primary_key: ["id"],
            }]);
            assert.equal(reports[0].status, "applied", reports[0].error);
            // A local insert after a failover: the next id must be free.
            const [id] = await pair.destination.column(
              `INSERT INTO ticket (name) VALUES ('local') RETURNING id`,
            );
            assert.equal(id, "4");
          },
        );

        await t.step({
          name: "a sync role with table privileges only (no sequence privileges) still syncs",
          // Needs roles.
          ignore: backend.name !== "postgres",
          fn: async () => {
            const role = `sync_${crypto.randomUUID().slice(0, 8)}`;
            const ddl = `CREATE TABLE region_kind (id serial PRIMARY KEY, name text NOT NULL);`;
            await pair.owner.exec(
              ddl + `INSERT INTO region_kind (name) VALUES ('a'), ('b');`,
            );
            await pair.destination.exec(
              ddl + `CREATE ROLE ${role} LOGIN;
                GRANT SELECT, INSERT, UPDATE, DELETE ON region_kind TO ${role};`,
            );
            try {
              const [report] = await attemptAt(
                { us: pair.owner.url, au: asRole(pair.destination.url, role) },
                { name: "public.region_kind", primary_key: ["id"] },
              );
              assert.equal(report.status, "applied", report.error);
              // The sequence could not be moved: the report says so rather than stay silent.
              assert.match(
                report.warnings?.join("\n") ?? "",
                /sequence region_kind_id_seq of column "id" was not moved/,
              );
            } finally {
              await pair.destination.exec(
                `DROP TABLE region_kind; DROP OWNED BY ${role}; DROP ROLE ${role};`,
              );
            }
          },
        });

        await t.step({
          name: "a citext insert range resumed after a budget cut loses no row",
          // Needs ICU collations and citext.
          ignore: backend.name !== "postgres",
          fn: async () => {
            const ddl = `CREATE EXTENSION IF NOT EXISTS citext;
              CREATE TABLE place (name citext COLLATE "und-x-icu" PRIMARY KEY, body text);`;
            // 'École' is read back as the key 'école' (lowered in the column's collation); in
            // byte order of the lowered-in-C text 'Édith' comes after 'École' but before 'école'.
            await pair.owner.exec(
              ddl + `INSERT INTO place VALUES ('École', repeat('x', 1000)),
                ('Édith', repeat('y', 1000)), ('Zed', 'z');`,
            );
            await pair.destination.exec(ddl);
            const outcome = await budgeted(pair, {
              name: "public.place",
              primary_key: ["name"],
            }, 500);
            assert.ok(!(outcome instanceof Error), String(outcome));
            // The run reports every owner row inserted...
            assert.equal((outcome as { inserts: number }).inserts, 3);
            // ...and every one of them must be there.
            assert.deepEqual(
              await pair.destination.column(`SELECT name::text FROM place ORDER BY 1`),
              await pair.owner.column(`SELECT name::text FROM place ORDER BY 1`),
            );
          },
        });

        await t.step(
          "pages cut by bytes lose no row: composite text (COLLATE C) + numeric keys",
          async () => {
            const ddl = `CREATE TABLE mixed (a text COLLATE "C", b numeric, body text,
              PRIMARY KEY (a, b));`;
            const rows = `INSERT INTO mixed SELECT chr(65 + g % 7) || (g % 13), (g % 5) + 0.50,
              repeat(md5(g::text), 1 + (g * 7919) % 300) FROM generate_series(1, 700) g
              ON CONFLICT DO NOTHING;`;
            await pair.owner.exec(ddl + rows);
            await pair.destination.exec(
              ddl + rows + `DELETE FROM mixed WHERE (length(a) + b::int) % 3 = 0;
                UPDATE mixed SET body = 'old' WHERE b > 3;`,
            );
            const table = { name: "public.mixed", primary_key: ["a", "b"] };
            for (const budget of [1, 3000, 50_000]) {
              const outcome = await budgeted(pair, table, budget);
              assert.ok(!(outcome instanceof Error), String(outcome));
              assert.equal(
                await fingerprint(pair.destination, "mixed", `a, b`),
                await fingerprint(pair.owner, "mixed", `a, b`),
              );
              await pair.destination.exec(
                `DELETE FROM mixed WHERE b < 2; UPDATE mixed SET body = 'x' WHERE b > 4;`,
              );
            }
          },
        );

        await t.step(
          "timestamptz/timetz/date keys with the destination in its own zone: swap, update, delete",
          async () => {
            const [database] = await pair.destination.column(`SELECT current_database()`);
            await pair.destination.exec(
              `ALTER DATABASE "${database}" SET TimeZone = 'America/St_Johns';
               SET TimeZone = 'America/St_Johns'`,
            );
            try {
              const ddl = `CREATE TABLE slot (at timestamptz, t timetz, d date, code text NOT NULL
                UNIQUE, note text, local text, PRIMARY KEY (at, t, d));`;
              await pair.owner.exec(
                ddl + `INSERT INTO slot VALUES
                ('2026-03-08 06:30:00+00', '10:00+00', '2026-01-01', 'a', 'n1', NULL),
                ('1850-01-01 00:00:00+00', '10:00+05:30', '2026-01-02', 'b', 'n2', NULL),
                ('2026-11-01 03:00:00.123456+00', '23:59:59+14', '2026-01-03', 'c', 'n3', NULL);`,
              );
              await pair.destination.exec(
                ddl + `INSERT INTO slot VALUES
                ('2026-03-08 06:30:00+00', '10:00+00', '2026-01-01', 'b', 'old', 'keep1'),
                ('1850-01-01 00:00:00+00', '10:00+05:30', '2026-01-02', 'a', 'n2', 'keep2'),
                ('2020-01-01 00:00:00+00', '10:00+00', '2026-01-09', 'z', 'gone', NULL);`,
              );
              const table = {
                name: "public.slot",
                primary_key: ["at", "t", "d"],
                exclude_columns: ["local"],
                delete_missing: true,
                max_delete_ratio: 1,
              };
              const { reports } = await attempt(pair, [table]);
              assert.equal(reports[0].status, "applied", reports[0].error);
              const cols = `at AT TIME ZONE 'UTC', t, d, code, note`;
              const q = `SELECT concat_ws(' ', ${cols}) FROM slot ORDER BY 1`;
              await pair.owner.exec(`SET TimeZone = 'UTC'`);
              const expected = await pair.owner.column(q);
              assert.deepEqual(await pair.destination.column(q), expected);
              assert.deepEqual(
                await pair.destination.column(`SELECT local FROM slot ORDER BY code`),
                ["keep1", "keep2", null],
              );
              const { reports: again } = await attempt(pair, [table]);
              assert.equal(again[0].status, "in_sync", again[0].error);
            } finally {
              await pair.destination.exec(`ALTER DATABASE "${database}" RESET ALL; RESET ALL`);
            }
          },
        );

        await t.step(
          "a key column named k: an empty destination gets every owner row",
          async () => {
            const ddl = `CREATE TABLE code_point (k int PRIMARY KEY, label text NOT NULL);`;
            await pair.owner.exec(
              ddl + `INSERT INTO code_point SELECT g, 'U+' || g FROM generate_series(1, 300) g;`,
            );
            await pair.destination.exec(ddl);
            const { reports } = await attempt(pair, [{
              name: "public.code_point",
              primary_key: ["k"],
            }]);
            assert.equal(reports[0].status, "applied", reports[0].error);
            assert.equal(reports[0].inserts, 300);
            assert.equal(
              await fingerprint(pair.destination, "code_point", "k"),
              await fingerprint(pair.owner, "code_point", "k"),
            );
          },
        );

        await t.step({
          name: "a sequence in a schema the sync login has no USAGE on",
          ignore: backend.name !== "postgres",
          fn: async () => {
            const role = `sync_${crypto.randomUUID().slice(0, 8)}`;
            const ddl = `CREATE SCHEMA ids; CREATE SEQUENCE ids.issue_seq;
              CREATE TABLE issue (id bigint PRIMARY KEY DEFAULT nextval('ids.issue_seq'),
                name text);`;
            await pair.owner.exec(
              ddl + `INSERT INTO issue (name) SELECT 'o' || g FROM generate_series(1, 3) g;`,
            );
            await pair.destination.exec(
              ddl + `CREATE ROLE ${role} LOGIN;
                GRANT SELECT, INSERT, UPDATE, DELETE ON issue TO ${role};
                GRANT SELECT, UPDATE, USAGE ON ids.issue_seq TO ${role};`,
            );
            // The role can insert at the destination through the default: no schema USAGE needed.
            try {
              const [report] = await attemptAt(
                { us: pair.owner.url, au: asRole(pair.destination.url, role) },
                { name: "public.issue", primary_key: ["id"] },
              );
              assert.equal(report.status, "applied", report.error);
              // The sequence could not be moved: the report says so rather than stay silent.
              assert.match(
                report.warnings?.join("\n") ?? "",
                /sequence ids\.issue_seq of column "id" was not moved/,
              );
            } finally {
              await pair.destination.exec(
                `DROP TABLE issue; DROP SCHEMA ids CASCADE; DROP OWNED BY ${role}; DROP ROLE ${role};`,
              );
            }
          },
        });

        await t.step({
          name: "a citext key lowered in an ICU collation bounds no range: every row is inserted",
          ignore: backend.name !== "postgres", // needs ICU collations and citext
          fn: async () => {
            const ddl = `CREATE EXTENSION IF NOT EXISTS citext;
              CREATE TABLE spot (name citext COLLATE "und-x-icu" PRIMARY KEY, pop int);`;
            // 88 ASCII keys both sides; 8 keys starting with 'É' only at the owner. In the
            // diff's byte order they come last, and the second level cuts them into a segment
            // of their own, bounded below by the first one's key lowered: 'éa1'.
            const common = `INSERT INTO spot SELECT 'a' || lpad(g::text, 4, '0'), g
              FROM generate_series(1, 88) g;`;
            await pair.owner.exec(
              ddl + common + `INSERT INTO spot SELECT 'Éa' || g, g FROM generate_series(1, 8) g;`,
            );
            await pair.destination.exec(ddl + common);
            const { reports: [report] } = await attempt(pair, [{
              name: "public.spot",
              primary_key: ["name"],
            }]);
            assert.equal(report.status, "applied", report.error);
            assert.equal(report.inserts, 8);
            assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM spot`), ["96"]);
            // Bounds in the key's own text: the second run finds nothing to do.
            const { reports: [again] } = await attempt(pair, [{
              name: "public.spot",
              primary_key: ["name"],
            }]);
            assert.equal(again.status, "in_sync", again.error);
          },
        });

        await t.step({
          name:
            "owner rows changed while a sync runs: what is written is the snapshot the diff read",
          // PGlite serves one session to every connection: the admin's writes would land inside
          // the sync's own transaction.
          ignore: backend.name !== "postgres",
          fn: async () => {
            const ddl = `CREATE TABLE moving (id int PRIMARY KEY, name text NOT NULL);`;
            const rows = `INSERT INTO moving SELECT g, 'v' || g FROM generate_series(1, 50) g;`;
            await pair.owner.exec(ddl + rows);
            // One run streams whole ranges to an empty table, the next reads rows by key.
            await pair.destination.exec(ddl);
            const snapshots: string[] = [];
            const run = async (change: string) => {
              snapshots.push(await fingerprint(pair.owner, "moving", "id"));
              const { config, databases } = pair.connect([
                {
                  name: "public.moving",
                  primary_key: ["id"],
                  delete_missing: true,
                  max_delete_ratio: 1,
                },
              ]);
              const owner = databases.get("us")!;
              const destination = databases.get("au")!;
              try {
                const spec = await resolveTableSpec(config.tables[0], [owner, destination]);
                let diffed = false;
                return await syncTable({ spec, config: config.tables[0] }, {
                  owner,
                  destination,
                }, {
                  dryRun: false,
                  batchRows: 1000,
                  // The owner commits a change after the diff, before the rows are read.
                  track: async (_table, work) => {
                    const result = await work();
                    if (!diffed) {
                      diffed = true;
                      await pair.owner.exec(change);
                    }
                    return result;
                  },
                });
              } finally {
                await Promise.all([...databases.values()].map((db) => db.close()));
              }
            };
            const first = await run(`DELETE FROM moving WHERE id IN (2, 30);
              UPDATE moving SET name = 'later' WHERE id = 3;`);
            assert.equal(first.inserts, 50);
            assert.equal(await fingerprint(pair.destination, "moving", "id"), snapshots[0]);

            await pair.destination.exec(`UPDATE moving SET name = 'stale' WHERE id IN (10, 20);
              DELETE FROM moving WHERE id = 40;`);
            const second = await run(`DELETE FROM moving WHERE id IN (10, 40);
              UPDATE moving SET name = 'later' WHERE id = 20;`);
            assert.deepEqual([second.updates, second.inserts, second.deletes], [3, 1, 2]);
            assert.equal(await fingerprint(pair.destination, "moving", "id"), snapshots[1]);
          },
        });

        await t.step({
          name:
            "a key naming no owner row, in a page the byte budget cut, fails the run instead of shifting rows onto other keys",
          ignore: backend.name !== "postgres", // needs ICU collations and citext
          fn: async () => {
            const ddl = `CREATE EXTENSION IF NOT EXISTS citext;
              CREATE TABLE town (name citext COLLATE "und-x-icu" PRIMARY KEY, body text);`;
            // The key of 'École' is its text lowered in the column's collation, 'école', which
            // citext's `=` (lowering in the database's, C) does not find at the owner: a gap
            // before two rows too large to share one page. The page read back holds 'éz1' alone.
            await pair.owner.exec(
              ddl + `INSERT INTO town VALUES ('École', 'o'),
                ('éz1', repeat('o', 5000)), ('éz2', repeat('o', 5000));`,
            );
            await pair.destination.exec(
              ddl + `INSERT INTO town VALUES ('école', 'd'),
                ('éz1', repeat('d', 5000)), ('éz2', repeat('d', 5000));`,
            );
            const before = await fingerprint(pair.destination, "town", "name");
            await assert.rejects(
              budgeted(pair, { name: "public.town", primary_key: ["name"] }, 1000),
              /3 keys read back other rows at the owner/,
            );
            assert.equal(await fingerprint(pair.destination, "town", "name"), before);
          },
        });

        await t.step(
          "a numeric[] key, whose equal values print differently, is refused before any write",
          async () => {
            const ddl = `CREATE TABLE band (k numeric[] PRIMARY KEY, label text);`;
            await pair.owner.exec(ddl + `INSERT INTO band VALUES ('{1.0,2}', 'owner');`);
            await pair.destination.exec(ddl + `INSERT INTO band VALUES ('{1.00,2}', 'old');`);
            // Refused before any write, rather than failing every run on the primary key.
            await assert.rejects(
              attempt(pair, [{ name: "public.band", primary_key: ["k"] }]),
              /primary key column "k" is numeric\[\] at "us": equal keys of it can print differently/,
            );
            assert.deepEqual(await pair.destination.column(`SELECT label FROM band`), ["old"]);
          },
        );

        await t.step(
          "a jsonb key, whose equal values print differently, is refused before any write",
          async () => {
            const ddl = `CREATE TABLE doc_key (k jsonb PRIMARY KEY, label text);`;
            await pair.owner.exec(ddl + `INSERT INTO doc_key VALUES ('{"n": 1.0}', 'owner');`);
            await pair.destination.exec(ddl + `INSERT INTO doc_key VALUES ('{"n": 1.00}', 'old');`);
            await assert.rejects(
              attempt(pair, [{ name: "public.doc_key", primary_key: ["k"] }]),
              /primary key column "k" is jsonb at "us": equal keys of it can print differently/,
            );
            assert.deepEqual(await pair.destination.column(`SELECT label FROM doc_key`), ["old"]);
          },
        );

        await t.step("a table named r syncs", async () => {
          const ddl = `CREATE TABLE r (code text PRIMARY KEY, label text);`;
          const rows =
            `INSERT INTO r SELECT 'c' || lpad(g::text, 4, '0'), 'x' FROM generate_series(1, 300) g;`;
          await pair.owner.exec(ddl + rows + `UPDATE r SET label = 'new' WHERE code = 'c0150';`);
          await pair.destination.exec(ddl + rows);
          const { reports: [report] } = await attempt(pair, [{
            name: "public.r",
            primary_key: ["code"],
          }]);
          assert.equal(report.status, "applied", report.error);
          assert.deepEqual(
            await pair.destination.column(`SELECT label FROM r WHERE code = 'c0150'`),
            ["new"],
          );
        });

        await t.step(
          "a key of a type named jsonb in another schema (a domain over int) syncs",
          async () => {
            const ddl = `CREATE SCHEMA app; CREATE DOMAIN app.jsonb AS integer;
            CREATE TABLE tag (id app.jsonb PRIMARY KEY, label text);`;
            await pair.owner.exec(ddl + `INSERT INTO tag VALUES (1, 'one'), (2, 'two');`);
            await pair.destination.exec(ddl + `INSERT INTO tag VALUES (1, 'old');`);
            const { reports: [report] } = await attempt(pair, [{
              name: "public.tag",
              primary_key: ["id"],
            }]);
            assert.equal(report.status, "applied", report.error);
            assert.deepEqual(await pair.destination.column(`SELECT label FROM tag ORDER BY id`), [
              "one",
              "two",
            ]);
          },
        );

        await t.step(
          "a bpchar[] key, whose equal values print differently, is refused before any write",
          async () => {
            // bpchar without a length keeps trailing blanks, and bpchareq ignores them:
            // '{a}' = '{"a "}', but array_out prints them apart.
            const ddl = `CREATE TABLE flag (k bpchar[] PRIMARY KEY, label text);`;
            await pair.owner.exec(ddl + `INSERT INTO flag VALUES ('{"a "}', 'owner');`);
            await pair.destination.exec(ddl + `INSERT INTO flag VALUES ('{a}', 'old');`);
            assert.deepEqual(
              await pair.owner.column(`SELECT ('{a}'::bpchar[] = '{"a "}'::bpchar[])::text`),
              ["true"],
            );
            const runs = [];
            for (let i = 0; i < 2; i++) {
              try {
                const { reports: [report] } = await attempt(pair, [{
                  name: "public.flag",
                  primary_key: ["k"],
                }]);
                runs.push(`${report.status}: ${report.error ?? ""}`);
              } catch (error) {
                runs.push(`refused: ${(error as Error).message}`);
              }
            }
            for (const run of runs) assert.match(run, /^refused: .*primary key column "k" is/);
          },
        );

        await t.step("a key of a range over bpchar is refused before any write", async () => {
          const ddl = `CREATE TYPE bprange AS RANGE (subtype = bpchar);
            CREATE TABLE span (k bprange PRIMARY KEY, label text);`;
          await pair.owner.exec(ddl + `INSERT INTO span VALUES ('["a ",b)', 'owner');`);
          await pair.destination.exec(ddl + `INSERT INTO span VALUES ('[a,b)', 'old');`);
          assert.deepEqual(
            await pair.owner.column(`SELECT ('["a ",b)'::bprange = '[a,b)'::bprange)::text`),
            ["true"],
          );
          let outcome: string;
          try {
            const { reports: [report] } = await attempt(pair, [{
              name: "public.span",
              primary_key: ["k"],
            }]);
            outcome = `${report.status}: ${report.error ?? ""}`;
          } catch (error) {
            outcome = `refused: ${(error as Error).message}`;
          }
          assert.match(outcome, /^refused: .*primary key column "k" is/);
        });

        await t.step({
          name: "a text[] key in a nondeterministic collation is refused before any write",
          ignore: backend.name !== "postgres", // needs ICU collations
          fn: async () => {
            const ddl =
              `CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
              CREATE TABLE word (k text[] COLLATE ci PRIMARY KEY, label text);`;
            await pair.owner.exec(ddl + `INSERT INTO word VALUES ('{Apple}', 'owner');`);
            await pair.destination.exec(ddl + `INSERT INTO word VALUES ('{apple}', 'old');`);
            let outcome: string;
            try {
              const { reports: [report] } = await attempt(pair, [{
                name: "public.word",
                primary_key: ["k"],
              }]);
              outcome = `${report.status}: ${report.error ?? ""}`;
            } catch (error) {
              outcome = `refused: ${(error as Error).message}`;
            }
            assert.match(outcome, /^refused: .*primary key column "k" is/);
          },
        });

        await t.step("a table t with columns named like the diff's aliases syncs", async () => {
          const ddl =
            `CREATE TABLE t (t int PRIMARY KEY, r text, x text, y text, e text, b text, i text,
              s text, n text, w text, h text, rn text, first text, lo text, hi text, v text, k text);
            CREATE TABLE x (r text, t int, PRIMARY KEY (r, t), i text);`;
          const rows =
            `INSERT INTO t (t, r, x, k) SELECT g, 'r', 'x', 'k' FROM generate_series(1, 300) g;
            INSERT INTO x SELECT 'a' || g % 7, g, 'i' FROM generate_series(1, 300) g;`;
          await pair.owner.exec(
            ddl + rows +
              `UPDATE t SET r = 'new' WHERE t = 150; UPDATE x SET i = 'new' WHERE t = 150;`,
          );
          await pair.destination.exec(
            ddl + rows + `DELETE FROM t WHERE t > 200; DELETE FROM x WHERE t > 200;`,
          );
          const { reports } = await attempt(pair, [
            { name: "public.t", primary_key: ["t"] },
            { name: "public.x", primary_key: ["r", "t"] },
          ]);
          for (const report of reports) assert.equal(report.status, "applied", report.error);
          assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM t`), ["300"]);
          assert.deepEqual(await pair.destination.column(`SELECT r FROM t WHERE t = 150`), ["new"]);
          assert.deepEqual(await pair.destination.column(`SELECT i FROM x WHERE t = 150`), ["new"]);
        });
      } finally {
        await pair.close();
      }
    },
  });
}

Deno.test("syncTable() stopped before it tries the destination's lock says so, not that another sync held it", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    const ddl = "CREATE TABLE subject (id int PRIMARY KEY, name text NOT NULL)";
    await pair.owner.exec(`${ddl}; INSERT INTO subject VALUES (1, 'a')`);
    await pair.destination.exec(ddl);
    const { config, databases } = pair.connect([{ name: "subject", primary_key: ["id"] }]);
    const owner = databases.get("us")!;
    const destination = databases.get("au")!;
    try {
      const spec = await resolveTableSpec(config.tables[0], [owner, destination]);
      const stopped = new AbortController();
      stopped.abort();
      await assert.rejects(
        syncTable({ spec, config: config.tables[0] }, { owner, destination }, {
          dryRun: false,
          signal: stopped.signal,
        }),
        (error: Error) => error.message === "Not attempted: the sync was stopped by a signal",
      );
    } finally {
      await Promise.all([...databases.values()].map((db) => db.close()));
    }
  } finally {
    await pair.close();
  }
});

Deno.test({
  name: "loop mode's second attempt still writes in the destination's own TimeZone (PostgreSQL)",
  ignore: QUICKEST_BACKEND.name !== "postgres",
  async fn() {
    const pair = await QUICKEST_BACKEND.pair();
    try {
      const [db] = await pair.destination.column(`SELECT current_database()`);
      await pair.destination.exec(`ALTER DATABASE "${db}" SET timezone TO 'Pacific/Auckland'`);
      await pair.owner.exec(`CREATE TABLE t (id int PRIMARY KEY, zone text)`);
      await pair.destination.exec(
        `CREATE TABLE t (id int PRIMARY KEY, zone text DEFAULT current_setting('TimeZone'))`,
      );
      // One set of connections for both attempts, as loop mode keeps them open.
      const { config, databases } = pair.connect([
        { name: "public.t", primary_key: ["id"], exclude_columns: ["zone"] },
      ]);
      try {
        for (const id of [1, 2]) {
          await pair.owner.exec(`INSERT INTO t VALUES (${id}, 'owner')`);
          const reports = await runAttempt(config, databases, {
            dryRun: false,
            log: collectLog().log,
            retryDelayMs: 1,
          });
          assert.equal(reports[0].status, "applied", JSON.stringify(reports[0]));
        }
      } finally {
        await Promise.all([...databases.values()].map((d) => d.close()));
      }
      assert.deepEqual(
        await pair.destination.column(`SELECT id || ' ' || zone FROM t ORDER BY id`),
        ["1 Pacific/Auckland", "2 Pacific/Auckland"],
      );
    } finally {
      await pair.close();
    }
  },
});
