/**
 * @module What one sync attempt reports per table and in its summary, and how a stop ends it:
 * each table's own outcome and bytes, a dry run's "planned" only where there is a plan, a stop
 * between destinations, and a destination's transaction that a stop lets finish.
 */
import assert from "node:assert/strict";
import { parseSyncConfig } from "../sync/config.ts";
import { openDatabase } from "../sync/database.ts";
import { startEmbeddedPostgres } from "../sync/embedded.ts";
import { formatSummary, runAttempt } from "../sync/run_attempt.ts";
import type { TableReport } from "../sync/run_attempt.ts";
import { collectLog } from "./sync_fixtures.ts";

const SCHEMA = `CREATE TABLE subject (id int PRIMARY KEY, name text NOT NULL);`;
const ROWS = (n: number) =>
  `INSERT INTO subject SELECT g, 'subject ' || g FROM generate_series(1, ${n}) g;`;
const TABLES = [{ name: "public.subject", primary_key: ["id"], delete_missing: true }];

Deno.test("a signal during a destination's transaction lets that transaction finish: the probe's stop listener is gone by then", async () => {
  const sides = await Promise.all([0, 1].map(() => startEmbeddedPostgres()));
  const [us, au] = sides;
  const config = parseSyncConfig({
    owner: "us",
    databases: { us: us.url, au: au.url },
    tables: TABLES,
  });
  const databases = new Map(
    Object.entries(config.databases).map(([region, url]) => [region, openDatabase(region, url)]),
  );
  try {
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
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
    await Promise.all(sides.map((side) => side.close()));
  }
});

Deno.test("a signal after the first destination's dry run leaves the next destination unplanned and reported skipped", async () => {
  const sides = await Promise.all([0, 1, 2].map(() => startEmbeddedPostgres()));
  const [us, au, nz] = sides;
  const config = parseSyncConfig({
    owner: "us",
    databases: { us: us.url, au: au.url, nz: nz.url },
    tables: TABLES,
  });
  const databases = new Map(
    Object.entries(config.databases).map(([region, url]) => [region, openDatabase(region, url)]),
  );
  try {
    await us.db.exec(SCHEMA + ROWS(20));
    await au.db.exec(SCHEMA);
    await nz.db.exec(SCHEMA);
    const controller = new AbortController();
    const { lines, log } = collectLog();
    const reports = await runAttempt(config, databases, {
      dryRun: true,
      signal: controller.signal,
      retryDelayMs: 1,
      log: (line) => {
        log(line);
        // SIGTERM arrives once "au" is planned: "nz" must not be started.
        if (line.includes('"msg":"table synced"')) controller.abort();
      },
    });
    assert.deepEqual(
      reports.map((r) => [r.destination, r.status, r.inserts, r.error]),
      [
        ["au", "planned", 20, undefined],
        ["nz", "skipped", 0, "Not attempted: the sync was stopped by a signal"],
      ],
      lines.join("\n"),
    );
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
    await Promise.all(sides.map((side) => side.close()));
  }
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
  const sides = await Promise.all([0, 1].map(() => startEmbeddedPostgres()));
  const [us, au] = sides;
  const config = parseSyncConfig({
    owner: "us",
    databases: { us: us.url, au: au.url },
    tables: [...TABLES, { name: "public.kind", primary_key: ["id"] }],
  });
  const databases = new Map(
    Object.entries(config.databases).map(([region, url]) => [region, openDatabase(region, url)]),
  );
  try {
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
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
    await Promise.all(sides.map((side) => side.close()));
  }
});
