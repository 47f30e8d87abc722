/**
 * @module What one sync attempt reports and leaves behind: the signal between destinations (for a
 * writing and a dry run) and during a destination's transaction, the delete guard at its exact
 * limit, the log's levels and byte counts, each table's own outcome and bytes, the summary's
 * wording, and the destination's sync lock (real PostgreSQL: PGlite serves every connection in one
 * session).
 */
import assert from "node:assert/strict";
import { parseSyncConfig } from "../sync/config.ts";
import { type Database, openDatabase } from "../sync/database.ts";
import { startEmbeddedPostgres } from "../sync/embedded.ts";
import { SyncStoppedError } from "../sync/errors.ts";
import { formatSummary, runAttempt, type TableReport } from "../sync/run_attempt.ts";
import { silentServer } from "./_servers.ts";
import { BACKENDS, collectLog, type Pair, QUICKEST_BACKEND } from "./sync_fixtures.ts";

const SCHEMA = `CREATE TABLE subject (id int PRIMARY KEY, name text NOT NULL);`;
const ROWS = (n: number) =>
  `INSERT INTO subject SELECT g, 'subject ' || g FROM generate_series(1, ${n}) g;`;
const TABLES = [{ name: "public.subject", primary_key: ["id"], delete_missing: true }];
/** The session advisory lock a writing sync takes on its destination. */
const SYNC_LOCK = 0x76657374;

type Embedded = Awaited<ReturnType<typeof startEmbeddedPostgres>>;

/**
 * Embedded PostgreSQL for each of `regions` (the first is the owner), the sync config for
 * `tables` and a connection to each database; all closed after `fn`.
 */
async function withEmbedded(
  regions: string[],
  tables: unknown[],
  fn: (run: {
    sides: Record<string, Embedded>;
    config: ReturnType<typeof parseSyncConfig>;
    databases: Map<string, Database>;
  }) => Promise<void>,
): Promise<void> {
  const started = await Promise.all(regions.map(() => startEmbeddedPostgres()));
  const sides = Object.fromEntries(regions.map((region, i) => [region, started[i]]));
  const config = parseSyncConfig({
    owner: regions[0],
    databases: Object.fromEntries(regions.map((region) => [region, sides[region].url])),
    tables,
  });
  const databases = new Map(
    Object.entries(config.databases).map(([region, url]) => [region, openDatabase(region, url)]),
  );
  try {
    await fn({ sides, config, databases });
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
    await Promise.all(started.map((side) => side.close()));
  }
}

// A dry run takes no lock, where a writing run finds the stop: it must look for the signal itself.
for (const dryRun of [false, true]) {
  const done = dryRun ? "dry run" : "transaction";
  Deno.test(`a signal after the first destination's ${done} leaves the next destination untouched and reported skipped`, async () => {
    await withEmbedded(
      ["us", "au", "nz"],
      TABLES,
      async ({ sides: { us, au, nz }, config, databases }) => {
        await us.db.exec(SCHEMA + ROWS(20));
        await au.db.exec(SCHEMA);
        await nz.db.exec(SCHEMA);
        const controller = new AbortController();
        const { lines, log } = collectLog();
        const reports = await runAttempt(config, databases, {
          dryRun,
          signal: controller.signal,
          retryDelayMs: 1,
          log: (line) => {
            log(line);
            // SIGTERM arrives once "au" is written (or planned): "nz" must not be started.
            if (line.includes('"msg":"table synced"')) controller.abort();
          },
        });
        assert.deepEqual(
          reports.map((r) => [r.destination, r.status, r.inserts, r.error]),
          [
            ["au", dryRun ? "planned" : "applied", 20, undefined],
            ["nz", "skipped", 0, "Not attempted: the sync was stopped by a signal"],
          ],
          lines.join("\n"),
        );
        assert.deepEqual((await nz.db.query(`SELECT count(*)::int AS n FROM subject`)).rows, [{
          n: 0,
        }]);
      },
    );
  });
}

Deno.test("a signal while the owner never answers ends the attempt at once, as stopped", async () => {
  const au = await startEmbeddedPostgres();
  const silent = silentServer();
  const config = parseSyncConfig({
    owner: "us",
    databases: { us: `postgres://sync@127.0.0.1:${silent.port}/app`, au: au.url },
    tables: TABLES,
  });
  const databases = new Map(
    Object.entries(config.databases).map(([region, url]) => [region, openDatabase(region, url)]),
  );
  try {
    const controller = new AbortController();
    const attempt = runAttempt(config, databases, {
      dryRun: false,
      signal: controller.signal,
      retryDelayMs: 1,
      log: () => {},
    });
    await new Promise((resolve) => setTimeout(resolve, 300)); // connecting to "us"
    const stoppedAt = performance.now();
    controller.abort();
    await assert.rejects(attempt, (error) => {
      assert.ok(error instanceof SyncStoppedError);
      assert.equal(
        error.message,
        'Not attempted: the sync was stopped by a signal while "us" was being reached',
      );
      return true;
    });
    // The connect try ran out its 10 s timeout before.
    const ms = performance.now() - stoppedAt;
    assert.ok(ms < 2000, `stopped ${ms.toFixed(0)} ms after the signal`);
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
    await silent.close();
    await au.close();
  }
});

Deno.test("a signal while a healthy owner's probe answer is on its way ends the attempt as stopped, not as a connection error", async () => {
  // The stop ends the connection, but an answer already on its way still settled the probe: the
  // owner counted as reachable, and the table check on its ended connection failed the attempt
  // with CONNECTION_ENDED (a review's proxy in front of PostgreSQL hit it 20 times in 20).
  const controller = new AbortController();
  const abandoned = new Set<string>();
  /** A database whose `SELECT 1` answers with `answer()`; once abandoned, every query fails. */
  const fake = (region: string, answer: () => unknown): Database => {
    const ended = () => Promise.reject(new Error("write CONNECTION_ENDED"));
    return {
      region,
      label: region,
      sql: Object.assign(
        () => abandoned.has(region) ? ended() : Promise.resolve().then(answer),
        { unsafe: ended },
      ) as unknown as Database["sql"],
      bytesRead: () => 0,
      bytesSent: () => 0,
      scrub: (text) => text,
      close: () => Promise.resolve(),
      abandon: () => {
        abandoned.add(region);
        return Promise.resolve();
      },
    };
  };
  const config = parseSyncConfig({
    owner: "us",
    databases: { us: "postgres://u@127.0.0.1/a", au: "postgres://u@127.0.0.1/b" },
    tables: TABLES,
  });
  const databases = new Map([
    ["us", fake("us", () => (controller.abort(), [{}]))], // SIGTERM as the answer arrives
    ["au", fake("au", () => [{}])],
  ]);
  await assert.rejects(
    runAttempt(config, databases, {
      dryRun: false,
      signal: controller.signal,
      retryDelayMs: 1,
      log: () => {},
    }),
    (error) => {
      assert.ok(error instanceof SyncStoppedError, String(error));
      return true;
    },
  );
  assert.ok(abandoned.has("us"));
});

Deno.test("max_delete_ratio refuses only what exceeds it: deletes exactly at the ratio go through", async (t) => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    // 29 of 100 destination rows are the owner's no longer, under max_delete_ratio 0.29
    // (0.29 * 100 is 28.999999999999996 in floating point), and 1 of 10 under 0.1.
    await pair.owner.exec(
      `${SCHEMA} ${ROWS(71)} CREATE TABLE tiny (id int PRIMARY KEY); INSERT INTO tiny
       SELECT generate_series(1, 9);`,
    );
    await pair.destination.exec(
      `${SCHEMA} ${ROWS(100)} CREATE TABLE tiny (id int PRIMARY KEY); INSERT INTO tiny
       SELECT generate_series(1, 10);`,
    );
    for (
      const [table, ratio, deletes] of [["public.tiny", 0.1, 1], [
        "public.subject",
        0.29,
        29,
      ]] as const
    ) {
      await t.step(`${deletes} deletes of ${deletes / ratio} rows under ${ratio}`, async () => {
        const { config, databases } = pair.connect(
          [{ name: table, primary_key: ["id"], delete_missing: true, max_delete_ratio: ratio }],
        );
        try {
          const [report] = await runAttempt(config, databases, {
            dryRun: false,
            log: collectLog().log,
            retryDelayMs: 1,
          });
          assert.equal(report.status, "applied", report.error);
          assert.equal(report.deletes, deletes);
        } finally {
          await Promise.all([...databases.values()].map((db) => db.close()));
        }
      });
    }
  } finally {
    await pair.close();
  }
});

Deno.test("a table's log line counts the bytes it sent, and a failed table logs at level error, tried once", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  try {
    await pair.owner.exec(SCHEMA + ROWS(50));
    await pair.destination.exec(
      SCHEMA + ROWS(40) + `ALTER TABLE subject ADD CONSTRAINT refuse_45 CHECK (id <> 45);`,
    );
    const run = async () => {
      const { config, databases } = pair.connect(TABLES);
      try {
        const { lines, log } = collectLog();
        await runAttempt(config, databases, { dryRun: false, log, retryDelayMs: 1 });
        return lines.map((l) => JSON.parse(l));
      } finally {
        await Promise.all([...databases.values()].map((db) => db.close()));
      }
    };
    const failed = await run();
    // One table has nothing to try again on its own: no second transaction for the same failure.
    assert.deepEqual(failed.map((l) => [l.level, l.msg]), [
      ["info", "sync attempt started"],
      ["error", "table sync failed"],
    ]);
    assert.match(failed[1].error, /refuse_45/);
    await pair.destination.exec(`ALTER TABLE subject DROP CONSTRAINT refuse_45`);
    const [, synced] = await run();
    assert.equal(synced.level, "info");
    assert.equal(synced.status, "applied");
    // The diff's range queries and the inserted rows went to the servers.
    assert.ok(synced.bytes_sent > 0, `bytes_sent ${synced.bytes_sent}`);
    assert.ok(synced.bytes_read > 0, `bytes_read ${synced.bytes_read}`);
  } finally {
    await pair.close();
  }
});

const REAL = BACKENDS[1];

/**
 * A test of the destination's lock on PostgreSQL: ten rows on the owner, the empty table on the
 * destination and connections for one sync; every connection and advisory lock is let go after.
 */
function lockTest(
  name: string,
  fn: (
    ctx: { pair: Pair } & ReturnType<Pair["connect"]>,
  ) => Promise<void>,
) {
  Deno.test({
    name,
    ignore: REAL.ignoreReason !== undefined,
    async fn() {
      const pair = await REAL.pair();
      try {
        await pair.owner.exec(SCHEMA + ROWS(10));
        await pair.destination.exec(SCHEMA);
        const { config, databases } = pair.connect(TABLES);
        try {
          await fn({ pair, config, databases });
        } finally {
          await Promise.all([...databases.values()].map((db) => db.close()));
          await pair.destination.admin.unsafe(`SELECT pg_advisory_unlock_all()`);
        }
      } finally {
        await pair.close();
      }
    },
  });
}

lockTest(
  "a sync releases the destination's lock after its attempt, while its connections stay open (PostgreSQL)",
  async ({ pair, config, databases }) => {
    // Loop mode keeps its connections between attempts: a cron run must not wait behind it.
    const [report] = await runAttempt(config, databases, {
      dryRun: false,
      log: collectLog().log,
      retryDelayMs: 1,
    });
    assert.equal(report.status, "applied", report.error);
    const [locked] = await pair.destination.column(`SELECT pg_try_advisory_lock(${SYNC_LOCK})`);
    assert.equal(locked, "true", "the finished sync still holds the destination's lock");
    await pair.destination.admin.unsafe(`SELECT pg_advisory_unlock(${SYNC_LOCK})`);
  },
);

lockTest(
  "a dry run does not wait for the lock another sync holds on the destination (PostgreSQL)",
  async ({ pair, config, databases }) => {
    await pair.destination.admin.unsafe(`SELECT pg_advisory_lock(${SYNC_LOCK})`);
    const controller = new AbortController();
    let timer;
    try {
      const run = runAttempt(config, databases, {
        dryRun: true,
        signal: controller.signal,
        log: collectLog().log,
        retryDelayMs: 1,
      });
      const first = await Promise.race([
        run.then(() => "finished"),
        new Promise<string>((resolve) => {
          timer = setTimeout(() => resolve("still waiting after 5 s"), 5000);
        }),
      ]);
      controller.abort(); // ends a wait, if there is one
      const [report] = await run;
      assert.equal(first, "finished");
      assert.equal(report.status, "planned", report.error);
      assert.equal(report.inserts, 10);
    } finally {
      clearTimeout(timer);
    }
  },
);

lockTest(
  "a sync waiting for another's lock on the destination logs the wait once, not every poll (PostgreSQL)",
  async ({ pair, config, databases }) => {
    await pair.destination.admin.unsafe(`SELECT pg_advisory_lock(${SYNC_LOCK})`);
    const controller = new AbortController();
    const { lines, log } = collectLog();
    const waits: string[] = [];
    let told!: () => void;
    const waiting = new Promise<void>((resolve) => told = resolve);
    try {
      const run = runAttempt(config, databases, {
        dryRun: false,
        signal: controller.signal,
        log: (line) => {
          log(line);
          if (line.includes("another sync holds the destination")) told();
        },
        progress: (line) => waits.push(line),
        retryDelayMs: 1,
      });
      await waiting;
      // The lock is asked for every 250 ms: a second poll comes and goes within this second.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      controller.abort();
      const [report] = await run;
      assert.equal(report.status, "skipped");
      assert.equal(
        lines.filter((l) => l.includes("another sync holds the destination")).length,
        1,
        lines.join("\n"),
      );
      assert.equal(waits.length, 1, waits.join("\n"));
    } finally {
      controller.abort();
    }
  },
);

// A transient failure of the destination's shared transaction (here a serialization
// failure on every try) is retried as a whole and then reported for every table, as the README
// says: it is not tried again table by table, which would multiply the tries against a region
// that is failing (a lost connection, a server restarting) by the number of tables.
for (const backend of BACKENDS) {
  Deno.test({
    name:
      `a serialization failure on every try is retried 4 times, not table by table (${backend.name})`,
    ignore: backend.ignoreReason !== undefined,
    async fn() {
      const pair = await backend.pair();
      try {
        const ddl = `CREATE TABLE busy (id int PRIMARY KEY, label text);
          CREATE TABLE calm (id int PRIMARY KEY, label text);`;
        await pair.owner.exec(
          ddl + `INSERT INTO busy VALUES (1, 'a'); INSERT INTO calm VALUES (1, 'b');`,
        );
        await pair.destination.exec(
          ddl + `CREATE SEQUENCE busy_tries;
          CREATE FUNCTION busy_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            PERFORM nextval('busy_tries');
            RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001';
          END $$;
          CREATE TRIGGER busy_conflict BEFORE INSERT ON busy
            FOR EACH ROW EXECUTE FUNCTION busy_conflict();`,
        );
        const { config, databases } = pair.connect([
          { name: "public.busy", primary_key: ["id"] },
          { name: "public.calm", primary_key: ["id"] },
        ]);
        const { lines, log } = collectLog();
        const reports = await runAttempt(config, databases, {
          dryRun: false,
          log,
          retryDelayMs: 1,
        });
        // The sequence is not transactional: it counts every try that reached the insert.
        const tries = Number(
          (await pair.destination.column(
            `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM busy_tries`,
          ))[0],
        );
        assert.deepEqual(
          reports.map((r) => [r.table, r.status, r.attempts]),
          [["public.busy", "failed", 4], ["public.calm", "failed", 4]],
        );
        assert.equal(tries, 4);
        assert.ok(!lines.some((l) => l.includes("syncing table by table")));
        assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM calm`), ["0"]);
      } finally {
        await pair.close();
      }
    },
  });
}

Deno.test("a signal during a destination's transaction lets that transaction finish: the probe's stop listener is gone by then", async () => {
  await withEmbedded(["us", "au"], TABLES, async ({ sides: { us, au }, config, databases }) => {
    await us.db.exec(SCHEMA + ROWS(20));
    await au.db.exec(SCHEMA);
    const controller = new AbortController();
    const { lines, log } = collectLog();
    // The first byte count is taken inside the destination's transaction, before its diff:
    // SIGTERM arrives there.
    const auDb = databases.get("au")!;
    databases.set("au", {
      ...auDb,
      bytesRead: () => {
        controller.abort();
        return auDb.bytesRead();
      },
    });
    const reports = await runAttempt(config, databases, {
      dryRun: false,
      signal: controller.signal,
      retryDelayMs: 1,
      log,
    });
    assert.ok(controller.signal.aborted, "the signal fired during the attempt");
    assert.deepEqual(
      reports.map((r) => [r.destination, r.status, r.inserts, r.error]),
      [["au", "applied", 20, undefined]],
      lines.join("\n"),
    );
    assert.deepEqual((await au.db.query(`SELECT count(*)::int AS n FROM subject`)).rows, [{
      n: 20,
    }]);
  });
});

Deno.test("a dry run's summary says planned only for tables with a plan, not for one in sync, failed or skipped", () => {
  const report = (table: string, status: TableReport["status"], error?: string): TableReport => ({
    destination: "au",
    table,
    dry_run: true,
    status,
    inserts: status === "planned" ? 3 : 0,
    updates: 0,
    deletes: 0,
    extra: 0,
    owner_rows: 3,
    destination_rows: 0,
    bytes_read: 0,
    bytes_sent: 0,
    duration_ms: 0,
    attempts: status === "skipped" ? 0 : 1,
    ...(error ? { error } : {}),
  });
  const summary = formatSummary([
    report("public.a", "planned"),
    report("public.b", "in_sync"),
    report("public.c", "failed", 'at "au": connect ECONNREFUSED 127.0.0.1:5432'),
    report("public.d", "skipped", "Not attempted: the sync was stopped by a signal"),
  ]);
  const statusOf = (table: string) =>
    summary.split("\n").map((line) => line.split(/ {2,}/)).find((cells) => cells[1] === table)?.[2];
  assert.equal(statusOf("public.a"), "planned (dry run)", summary);
  assert.equal(statusOf("public.b"), "in_sync", summary);
  assert.equal(statusOf("public.c"), "failed", summary);
  assert.equal(statusOf("public.d"), "skipped", summary);
  // Only the failed and skipped tables have a message line; no "undefined" for the others.
  assert.deepEqual(summary.split("\n").slice(5).map((line) => line.split(":")[0]), [
    "au public.c",
    "au public.d",
  ], summary);
});

Deno.test("each table of a destination is reported with its own outcome, not the first table's", async () => {
  const tables = [...TABLES, { name: "public.kind", primary_key: ["id"] }];
  await withEmbedded(["us", "au"], tables, async ({ sides: { us, au }, config, databases }) => {
    const KIND = `CREATE TABLE kind (id int PRIMARY KEY); INSERT INTO kind VALUES (1), (2);`;
    await us.db.exec(SCHEMA + ROWS(20) + KIND);
    await au.db.exec(SCHEMA + KIND);
    const { lines, log } = collectLog();
    const reports = await runAttempt(config, databases, { dryRun: false, retryDelayMs: 1, log });
    assert.deepEqual(
      reports.map((r) => [r.table, r.status, r.inserts, r.owner_rows]),
      [
        ["public.subject", "applied", 20, 20],
        ["public.kind", "in_sync", 0, 2],
      ],
      lines.join("\n"),
    );
    // Each table counts only its own bytes: together no more than both connections read.
    const total = [...databases.values()].reduce((n, db) => n + db.bytesRead(), 0);
    const counted = reports.reduce((n, r) => n + r.bytes_read, 0);
    assert.ok(counted > 0 && counted <= total, `tables counted ${counted} of ${total} bytes read`);
  });
});
