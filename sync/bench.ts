/**
 * @module `deno task bench:sync`: segmented diff vs fetching every key and checksum, on 1M rows.
 *
 * Uses `SYNC_TEST_PG_URL` when set, else starts a local cluster with initdb. Flags:
 * `--rows N` (default 1000000), `--rounds N` (default 3; medians are reported),
 * `--key bigint|text` (default bigint).
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { type Database, openDatabase } from "./database.ts";
import { parseSyncConfig } from "./config.ts";
import { resolveTableSpec, type TableSpec } from "./table_spec.ts";
import { syncTable } from "./sync_table.ts";
import { keyJson, PIN_SESSION_SQL, rowHash } from "./sql_fragments.ts";
import { startLocalPostgres } from "./local_postgres.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "3" },
    key: { type: "string", default: "bigint" },
  },
});
const ROWS = Number(flags.rows);
const ROUNDS = Number(flags.rounds);

const KEY = flags.key === "text" ? "text" : "bigint";
/** The key for number `n`: a bigint, or zero-padded text so text order matches number order. */
const keyOf = (n: string) => KEY === "text" ? `lpad((${n})::text, 9, '0')` : `(${n})`;

const DDL = `CREATE TABLE bench (
  id ${KEY} PRIMARY KEY, n bigint NOT NULL, name text NOT NULL, amount numeric(12,2),
  at timestamptz, doc jsonb)`;
// Owner keys are even so the destination can hold extra (odd) keys spread across the key space.
const SEED = `INSERT INTO bench
  SELECT ${keyOf("2 * g")}, 2 * g, 'name ' || g, (g % 100000) / 100.0,
    '2024-01-01'::timestamptz + g * interval '1.5 second', jsonb_build_object('g', g, 'tag', g % 7)
  FROM generate_series(1, ${ROWS}) AS g`;
/** 0.1 % of rows changed at the destination: ~60 % updated, ~20 % missing, ~20 % extra. */
const CHANGES = Math.round(ROWS / 1000);
const DRIFT = [
  `UPDATE bench SET name = name || '*' WHERE (n / 2) % ${Math.round(ROWS / (CHANGES * 0.6))} = 0`,
  `DELETE FROM bench WHERE (n / 2) % ${Math.round(ROWS / (CHANGES * 0.2))} = 7`,
  `INSERT INTO bench (id, n, name) SELECT ${
    keyOf(`2 * (g * ${Math.round(ROWS / (CHANGES * 0.2))}) + 1`)
  }, 2 * (g * ${Math.round(ROWS / (CHANGES * 0.2))}) + 1, 'extra'
  FROM generate_series(1, ${Math.round(CHANGES * 0.2)}) AS g`,
];

function ms(start: number) {
  return performance.now() - start;
}

function transferred(dbs: Database[]) {
  return dbs.reduce((n, db) => n + db.bytesRead() + db.bytesSent(), 0);
}

/** One full-table count + hash sum on one side: the floor for any checksum-based comparison. */
async function hashAggregate(db: Database, spec: TableSpec) {
  const start = performance.now();
  await db.sql.begin("isolation level repeatable read read only", async (tx) => {
    await tx.unsafe(PIN_SESSION_SQL);
    await tx.unsafe(`SELECT count(*), sum(${rowHash(spec)}::numeric)::text FROM ${spec.sqlName}`);
  });
  return ms(start);
}

/** The naive comparison: stream every key and row hash from both sides and diff in memory. */
async function naiveDiff(owner: Database, destination: Database, spec: TableSpec) {
  const query = `SELECT ${keyJson(spec)} AS k, ${rowHash(spec)}::text AS h FROM ${spec.sqlName}`;
  const read = (db: Database) =>
    db.sql.begin("isolation level repeatable read read only", async (tx) => {
      await tx.unsafe(PIN_SESSION_SQL);
      const map = new Map<string, string>();
      await tx.unsafe<{ k: string; h: string }[]>(query).cursor(10_000, (rows) => {
        for (const row of rows) map.set(row.k, row.h);
      });
      return map;
    });
  const [mine, theirs] = await Promise.all([read(owner), read(destination)]);
  let differences = 0;
  for (const [key, hash] of mine) if (theirs.get(key) !== hash) differences++;
  for (const key of theirs.keys()) if (!mine.has(key)) differences++;
  return differences;
}

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(2)} MiB`;
const sec = (millis: number) => `${(millis / 1000).toFixed(2)} s`;

const local = Deno.env.get("SYNC_TEST_PG_URL") ? undefined : await startLocalPostgres();
const serverUrl = Deno.env.get("SYNC_TEST_PG_URL") ?? local?.url;
if (!serverUrl) {
  console.error("Cannot run the benchmark: set SYNC_TEST_PG_URL or install PostgreSQL (initdb)");
  Deno.exit(2);
}
const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
const names = ["sync_bench_owner", "sync_bench_destination"];
const urls = names.map((name) => {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
});
try {
  for (const name of names) {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name}`);
    await admin.unsafe(`CREATE DATABASE ${name}`);
  }
  const seedStart = performance.now();
  await Promise.all(urls.map(async (url, i) => {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    await sql.unsafe(DDL);
    await sql.unsafe(SEED);
    if (i === 1) { for (const statement of DRIFT) await sql.unsafe(statement); }
    await sql.unsafe("VACUUM ANALYZE bench");
    await sql.end();
  }));
  console.error(`Seeded ${ROWS} rows per side in ${sec(ms(seedStart))}`);

  const config = parseSyncConfig({
    owner: "us",
    databases: { us: urls[0], au: urls[1] },
    tables: [{ name: "bench", primary_key: ["id"], delete_missing: true }],
  });
  const owner = openDatabase("us", urls[0]);
  const destination = openDatabase("au", urls[1]);
  const both = [owner, destination];
  const spec = await resolveTableSpec(config.tables[0], both);

  // Warm the cache so every measurement reads from memory.
  await Promise.all(both.map((db) => hashAggregate(db, spec)));

  /** Time `fn` and count the bytes both connections move while it runs. */
  const measure = async <T>(fn: () => Promise<T>) => {
    const bytes = transferred(both);
    const start = performance.now();
    const value = await fn();
    return { value, time: ms(start), bytes: transferred(both) - bytes };
  };
  type Run = Awaited<ReturnType<typeof measure<unknown>>>;
  const median = (runs: Run[], pick: (run: Run) => number) =>
    runs.map(pick).sort((a, b) => a - b)[Math.floor(runs.length / 2)];

  // Each round re-applies the same drift, so rounds are alike; medians tame a busy machine.
  const rounds = {
    aggregate: [] as Run[],
    naive: [] as Run[],
    sync: [] as Run[],
    again: [] as Run[],
  };
  let outcome!: Awaited<ReturnType<typeof syncTable>>;
  let again!: Awaited<ReturnType<typeof syncTable>>;
  let naiveDifferences = 0;
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) {
      for (const statement of DRIFT) await destination.sql.unsafe(statement);
      await destination.sql.unsafe("VACUUM ANALYZE bench");
    }
    rounds.aggregate.push(
      await measure(() => Promise.all(both.map((db) => hashAggregate(db, spec)))),
    );
    const naive = await measure(() => naiveDiff(owner, destination, spec));
    naiveDifferences = naive.value;
    rounds.naive.push(naive);
    const sync = await measure(() =>
      syncTable({ spec, config: config.tables[0] }, { owner, destination }, { dryRun: false })
    );
    outcome = sync.value;
    rounds.sync.push(sync);
    const second = await measure(() =>
      syncTable({ spec, config: config.tables[0] }, { owner, destination }, { dryRun: false })
    );
    again = second.value;
    rounds.again.push(second);
    const changed = outcome.inserts + outcome.updates + outcome.deletes;
    if (again.status !== "in_sync" || changed !== naiveDifferences) {
      throw new Error(
        `Benchmark sync is wrong: ${changed} changes applied, naive diff found ${naiveDifferences}, second run ${again.status}`,
      );
    }
  }
  const aggregateBoth = median(rounds.aggregate, (r) => r.time);
  const [ownerAggregate, destinationAggregate] = [0, 1].map((i) =>
    median(rounds.aggregate, (r) => (r.value as number[])[i])
  );
  const naiveTime = median(rounds.naive, (r) => r.time);
  const naiveBytes = median(rounds.naive, (r) => r.bytes);
  const syncTime = median(rounds.sync, (r) => r.time);
  const syncBytes = median(rounds.sync, (r) => r.bytes);
  const againTime = median(rounds.again, (r) => r.time);
  const againBytes = median(rounds.again, (r) => r.bytes);
  const spread = (runs: Run[]) => runs.map((r) => (r.time / 1000).toFixed(2)).join(", ");
  /** Each round's time over that round's aggregate: median (min–max), robust to a busy machine. */
  const ratio = (runs: Run[]) => {
    const ratios = runs.map((r, i) => r.time / rounds.aggregate[i].time).sort((a, b) => a - b);
    const mid = ratios[Math.floor(ratios.length / 2)];
    return ratios.length > 1
      ? `${mid.toFixed(2)}× (${ratios[0].toFixed(2)}–${ratios.at(-1)!.toFixed(2)})`
      : `${mid.toFixed(2)}×`;
  };
  console.error(`aggregate s: ${spread(rounds.aggregate)}`);
  console.error(`naive s: ${spread(rounds.naive)}`);
  console.error(`sync s: ${spread(rounds.sync)}`);
  console.error(`second sync s: ${spread(rounds.again)}`);

  // A first sync: the whole table copied into an empty destination, with progress.
  await destination.sql.unsafe("TRUNCATE bench");
  const bytes = transferred(both);
  const start = performance.now();
  let shown = start;
  const first = await syncTable({ spec, config: config.tables[0] }, { owner, destination }, {
    dryRun: false,
    onProgress: (p) => {
      if (performance.now() - shown < 2000) return;
      shown = performance.now();
      console.error(`progress: ${p.inserted}/${p.total} rows inserted`);
    },
  });
  const firstTime = ms(start);
  const firstBytes = transferred(both) - bytes;
  const afterFirst = await syncTable({ spec, config: config.tables[0] }, { owner, destination }, {
    dryRun: true,
  });
  await Promise.all(both.map((db) => db.close()));
  if (first.inserts !== first.ownerRows || afterFirst.status !== "in_sync") {
    throw new Error(
      `Benchmark first sync is wrong: ${first.inserts} inserted, then ${afterFirst.status}`,
    );
  }

  const changed = outcome.inserts + outcome.updates + outcome.deletes;
  console.log(`
${
    ROWS.toLocaleString("en")
  } rows with a ${KEY} key, ${changed} rows differing at the destination (${outcome.inserts} missing, ${outcome.updates} changed, ${outcome.deletes} extra); PostgreSQL on loopback, both databases on one 2-core machine; median of ${ROUNDS} rounds.

| measurement | time (median) | bytes on the wire | vs naive bytes | vs hash aggregate time, same round: median (min–max) |
| --- | ---: | ---: | ---: | ---: |
| full-table hash aggregate, both sides at once | ${sec(aggregateBoth)} | – | – | 1.00× |
| ↳ owner alone / destination alone | ${sec(ownerAggregate)} / ${
    sec(destinationAggregate)
  } | – | – | – |
| naive diff: every key + row hash from both sides (no apply) | ${sec(naiveTime)} | ${
    mib(naiveBytes)
  } | 100 % | ${ratio(rounds.naive)} |
| segmented sync: diff + apply in one transaction | ${sec(syncTime)} | ${mib(syncBytes)} | ${
    (100 * syncBytes / naiveBytes).toFixed(2)
  } % | ${ratio(rounds.sync)} |
| second sync (already in line) | ${sec(againTime)} | ${mib(againBytes)} | ${
    (100 * againBytes / naiveBytes).toFixed(2)
  } % | ${ratio(rounds.again)} |
| first sync into an empty destination (${first.inserts.toLocaleString("en")} rows copied) | ${
    sec(firstTime)
  } | ${mib(firstBytes)} | – | ${(firstTime / aggregateBoth).toFixed(2)}× |
`);
} finally {
  for (const name of names) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
  await local?.stop();
}
