import assert from "node:assert/strict";
import { main } from "../sync/cli.ts";
import FakeTimers from "@sinonjs/fake-timers";
import postgres from "postgres";
import { BACKENDS, type Pair, QUICKEST_BACKEND } from "./sync_fixtures.ts";
import { silentServer } from "./_servers.ts";

const SCHEMA = `CREATE TABLE subject (id int PRIMARY KEY, name text NOT NULL)`;
const TABLES = [{ name: "public.subject", primary_key: ["id"], delete_missing: true }];

async function withPair(fn: (pair: Pair, dir: string) => Promise<void>) {
  const pair = await QUICKEST_BACKEND.pair();
  const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
  try {
    await pair.owner.exec(
      `${SCHEMA}; INSERT INTO subject SELECT g, 'subject ' || g FROM generate_series(1, 50) g`,
    );
    await pair.destination.exec(
      `${SCHEMA}; INSERT INTO subject SELECT g, 'subject ' || g FROM generate_series(1, 40) g`,
    );
    await fn(pair, dir);
  } finally {
    await pair.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function writeConfig(dir: string, config: Record<string, unknown>) {
  const path = `${dir}/sync.json`;
  await Deno.writeTextFile(path, JSON.stringify(config));
  return path;
}

function capture(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    io: {
      stdout: (l: string) => out.push(l),
      stderr: (l: string) => err.push(l),
      env: (n: string) => env[n],
    },
  };
}

Deno.test("main() --once syncs, logs one JSON line per table and prints a summary", async () => {
  await withPair(async (pair, dir) => {
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: "${US}", au: "${AU}" },
      tables: TABLES,
    });
    const { out, io } = capture({ US: pair.owner.url, AU: pair.destination.url });
    const status = await main(["--config", config, "--once"], io);
    assert.equal(status, 0);
    const all = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    assert.deepEqual(all.map((l) => l.msg), ["sync attempt started", "table synced"]);
    assert.deepEqual(all[0].databases, { us: pair.owner.url, au: pair.destination.url });
    const logs = all.slice(1);
    assert.equal(logs[0].table, "public.subject");
    assert.equal(logs[0].inserts, 10);
    assert.ok(logs[0].bytes_read > 0 && logs[0].duration_ms >= 0);
    const summary = out.at(-1)!.split("\n");
    assert.match(summary[0], /^destination +table +status +inserted/);
    assert.match(summary[1], /^au +public\.subject +applied +10 +0 +0 +0 +50 /);
    const [count] = await pair.destination.column(`SELECT count(*) FROM subject`);
    assert.equal(count, "50");
  });
});

Deno.test("main() exits 2 with the config error, and for a table the config does not list", async () => {
  await withPair(async (pair, dir) => {
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: "${US}", au: "${AU}" },
      tables: TABLES,
    });
    const missing = capture({ US: pair.owner.url });
    assert.equal(await main(["--config", config, "--once"], missing.io), 2);
    assert.deepEqual(missing.err, [
      'Cannot load sync config: environment variable "AU" is not set (used in databases.au)',
    ]);
    const unknown = capture({ US: pair.owner.url, AU: pair.destination.url });
    assert.equal(await main(["--config", config, "--once", "--table", "nope"], unknown.io), 2);
    assert.deepEqual(unknown.err, [
      'Cannot sync table "nope": it is not in the config ("public.subject")',
    ]);
    const flag = capture();
    assert.equal(await main(["--frobnicate"], flag.io), 2);
    assert.match(flag.err[0], /Unknown option '--frobnicate'/);
    // `deno task sync -- --once …` passes the `--` on, as `deno task explain -- …` does.
    const dashes = capture({ US: pair.owner.url, AU: pair.destination.url });
    assert.equal(await main(["--", "--config", config, "--once", "--table", "nope"], dashes.io), 2);
    assert.match(dashes.err[0], /Cannot sync table "nope"/);
  });
});

Deno.test("main() never prints a database password", async () => {
  await withPair(async (pair, dir) => {
    // Port 1 on loopback refuses connections, so the error path runs with a password in the URL.
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: "postgres://sync:Pa55-word@127.0.0.1:1/app" },
      tables: TABLES,
    });
    const { out, err, io } = capture();
    assert.equal(await main(["--config", config, "--once"], io), 1);
    const all = [...out, ...err].join("\n");
    assert.match(all, /ECONNREFUSED/);
    assert.doesNotMatch(all, /Pa55-word/);
  });
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`sync CLI in loop mode waits interval_seconds between attempts and stops on ${signal}`, async () => {
    await withPair(async (pair, dir) => {
      const interval = 0.6;
      const config = await writeConfig(dir, {
        owner: "us",
        databases: { us: pair.owner.url, au: pair.destination.url },
        interval_seconds: interval,
        tables: TABLES,
      });
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../sync/cli.ts", import.meta.url).pathname,
          "--config",
          config,
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const stderr = new Response(child.stderr).text();
      const attempts: number[] = [];
      const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
      try {
        const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        while (attempts.length < 3) {
          const { value, done } = await lines.read();
          if (done) break;
          buffer += value;
          const parts = buffer.split("\n");
          buffer = parts.pop()!;
          for (const line of parts) {
            if (line.includes('"msg":"table synced"')) attempts.push(performance.now());
          }
        }
        assert.equal(attempts.length, 3, "expected three attempts before the deadline");
        // SIGINT is Ctrl-C in a terminal: README promises both stop loop mode cleanly.
        child.kill(signal);
        const status = await child.status;
        await lines.cancel();
        assert.equal(status.signal, null, `ended by ${status.signal}`);
        assert.equal(status.code, 0);
        assert.match(await stderr, /Stopping after the current transaction/);
      } finally {
        clearTimeout(deadline);
      }
      for (let i = 1; i < attempts.length; i++) {
        const gap = attempts[i] - attempts[i - 1];
        assert.ok(gap >= interval * 1000 * 0.9, `attempts ${gap.toFixed(0)} ms apart`);
        assert.ok(gap < interval * 1000 + 3000, `attempts ${gap.toFixed(0)} ms apart`);
      }
      const [count] = await pair.destination.column(`SELECT count(*) FROM subject`);
      assert.equal(count, "50");
    });
  });
}

async function until(condition: () => boolean, what: string) {
  const deadline = performance.now() + 20_000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

Deno.test("main() in loop mode logs a refused attempt and tries again after the delay", async () => {
  await withPair(async (pair, dir) => {
    await pair.destination.exec(`ALTER TABLE subject ALTER COLUMN name TYPE varchar(40)`);
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      interval_seconds: 0.3,
      tables: TABLES,
    });
    const { out, io } = capture();
    const controller = new AbortController();
    const running = main(["--config", config], { ...io, signal: controller.signal });
    const failed = () => out.filter((l) => l.includes('"msg":"sync attempt failed"'));
    await until(() => failed().length >= 2, "two refused attempts");
    assert.match(
      failed()[0],
      /Cannot sync table \\"public.subject\\": column \\"name\\" is text at \\"us\\" but character varying\(40\) at \\"au\\"/,
    );
    await pair.destination.exec(`ALTER TABLE subject ALTER COLUMN name TYPE text`);
    await until(() => out.some((l) => l.includes('"msg":"table synced"')), "a synced table");
    controller.abort();
    assert.equal(await running, 0);
    const [count] = await pair.destination.column(`SELECT count(*) FROM subject`);
    assert.equal(count, "50");
  });
});

Deno.test("main() never prints a password that makes the URL unparseable, and names its region", async (t) => {
  // An unencoded '#' in a generated password: a typical copy-paste mistake. (A URL with several
  // hosts, whose error quoted a URL nobody configured, is refused with the config now.)
  const fine = "postgres://sync@127.0.0.1:1/app";
  const broken = "postgres://sync:Pa55#word@127.0.0.1:1/app";
  for (
    const [name, databases, region] of [
      ["one host", { us: broken, au: fine }, "us"],
      // Not the first region's: the operator is pointed at the URL that is wrong.
      ["the second region's URL", { us: fine, au: broken }, "au"],
    ] as const
  ) {
    await t.step(name, async () => {
      const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
      try {
        const path = await writeConfig(dir, { owner: "us", databases, tables: TABLES });
        const { out, err, io } = capture();
        let status: number | string;
        try {
          status = await main(["--config", path, "--once"], io);
        } catch (error) {
          status = `threw: ${(error as Error).message}`;
        }
        const printed = [...out, ...err].join("\n");
        assert.doesNotMatch(`${status}\n${printed}`, /Pa55/);
        assert.match(printed, new RegExp(`database URL of region "${region}"`));
        assert.equal(status, 2);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("main() --once exits 1 and reports every table a signal left unsynced as skipped", async () => {
  await withPair(async (pair, dir) => {
    const ddl = `CREATE TABLE broken (id int PRIMARY KEY, label text);
      CREATE TABLE healthy (id int PRIMARY KEY, label text);`;
    await pair.owner.exec(
      ddl + `INSERT INTO broken VALUES (1, 'no'); INSERT INTO healthy VALUES (1, 'a');`,
    );
    await pair.destination.exec(
      ddl + `ALTER TABLE broken ADD CONSTRAINT refuse_no CHECK (label <> 'no');`,
    );
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      tables: [
        { name: "public.broken", primary_key: ["id"] },
        { name: "public.healthy", primary_key: ["id"] },
      ],
    });
    const controller = new AbortController();
    const { out, io } = capture();
    const status = await main(["--config", config, "--once"], {
      ...io,
      stdout: (line) => {
        io.stdout(line);
        // SIGTERM (say, a job's deadline) arrives between the transaction of both tables, which
        // failed, and the tables' own transactions.
        if (line.includes("syncing table by table")) controller.abort();
      },
      signal: controller.signal,
    });
    assert.equal(status, 1);
    const logs = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .filter((l) => l.table);
    assert.deepEqual(logs.map((l) => [l.table, l.status]), [
      ["public.broken", "skipped"],
      ["public.healthy", "skipped"],
    ]);
    // The shared transaction's own failure is in each report, not only in a warning line.
    for (const { error } of logs) {
      assert.match(
        error,
        /^Not attempted on its own: the sync was stopped by a signal after the destination's transaction failed: .*refuse_no/,
      );
    }
    assert.match(out.at(-1)!, /au +public\.healthy +skipped/);
    assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM healthy`), ["0"]);
  });
});

Deno.test("main() in loop mode waits interval_seconds even beyond the 24.8 days setTimeout can hold", async () => {
  await withPair(async (pair, dir) => {
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      interval_seconds: 30 * 24 * 3600, // a 30-day delay fired after 1 ms: back-to-back syncs
      tables: TABLES,
    });
    const { out, io } = capture();
    const controller = new AbortController();
    const running = main(["--config", config], { ...io, signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    controller.abort();
    assert.equal(await running, 0);
    const started = out.filter((l) => l.includes('"msg":"sync attempt started"'));
    assert.equal(started.length, 1, `${started.length} attempts in 1.5 s with a 30-day interval`);
  });
});

Deno.test("main() in loop mode stops at a misspelt --table instead of failing every interval", async () => {
  await withPair(async (pair, dir) => {
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      interval_seconds: 0.05,
      tables: TABLES,
    });
    const { out, err, io } = capture();
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 1500);
    const status = await main(["--config", config, "--table", "subjcet"], {
      ...io,
      signal: controller.signal,
    });
    clearTimeout(timer);
    assert.equal(status, 2);
    assert.deepEqual(out, []);
    assert.deepEqual(err, [
      'Cannot sync table "subjcet": it is not in the config ("public.subject")',
    ]);
  });
});

Deno.test("main() syncs a table named twice with --table once", async () => {
  await withPair(async (pair, dir) => {
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      tables: TABLES,
    });
    const { out, io } = capture();
    const status = await main(
      ["--config", config, "--once", "--table", "subject", "--table", "public.subject"],
      io,
    );
    const tables = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .filter((l) => l.table);
    assert.equal(status, 0);
    assert.deepEqual(tables.map((l) => [l.table, l.status, l.inserts]), [
      ["public.subject", "applied", 10],
    ]);
  });
});

Deno.test("main() reports the tries a failed table had", async () => {
  await withPair(async (pair, dir) => {
    await pair.destination.exec(`ALTER TABLE subject ADD CONSTRAINT refuse_45 CHECK (id <> 45)`);
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      tables: TABLES,
    });
    const { out, io } = capture();
    assert.equal(await main(["--config", config, "--once"], io), 1);
    const [report] = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .filter((l) => l.table);
    assert.equal(report.status, "failed");
    assert.match(report.error, /refuse_45/);
    assert.equal(report.attempts, 1, "a constraint violation is not retried, but it was tried");
  });
});

const REAL = BACKENDS[1];

Deno.test("main() syncs the other destinations when one refuses connections, and fails only that one's tables", async () => {
  await withPair(async (pair, dir) => {
    // Port 1 on loopback refuses connections: a region that is down, its URL with a password.
    const config = await writeConfig(dir, {
      owner: "us",
      databases: {
        us: pair.owner.url,
        eu: "postgres://sync:Pa55-word@127.0.0.1:1/app",
        au: pair.destination.url,
      },
      tables: TABLES,
    });
    const { out, err, io } = capture();
    assert.equal(await main(["--config", config, "--once"], io), 1);
    const all = [...out, ...err].join("\n");
    assert.doesNotMatch(all, /Pa55-word/);
    assert.doesNotMatch(all, /sync attempt failed/);
    const reports = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .filter((l) => l.table);
    assert.deepEqual(
      reports.map((r) => [r.destination, r.status]),
      [["eu", "failed"], ["au", "applied"]],
    );
    assert.match(reports[0].error, /^at "eu": .*ECONNREFUSED/);
    assert.equal(reports[0].attempts, 4); // a refused connection is retried, as before
    const retries = out.filter((l) => l.includes('"msg":"transient failure, retrying"'));
    assert.equal(retries.length, 3);
    for (const line of retries) {
      assert.match(JSON.parse(line).error, /^at "eu": connect ECONNREFUSED/);
    }
    assert.match(out.at(-1)!, /\neu public\.subject: at "eu": .*ECONNREFUSED/);
    const [count] = await pair.destination.column(`SELECT count(*) FROM subject`);
    assert.equal(count, "50");
  });
});

Deno.test("main() --once with an owner that refuses connections fails the attempt, retried once per try, and writes nothing", async () => {
  await withPair(async (pair, dir) => {
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: "postgres://sync:Pa55-word@127.0.0.1:1/app", au: pair.destination.url },
      tables: TABLES,
    });
    const { out, err, io } = capture();
    assert.equal(await main(["--config", config, "--once"], io), 1);
    assert.match(err.join("\n"), /^at "us": .*ECONNREFUSED/);
    const retries = out.filter((l) => l.includes('"msg":"transient failure, retrying"'));
    assert.equal(retries.length, 3);
    for (const line of retries) {
      assert.match(JSON.parse(line).error, /^at "us": connect ECONNREFUSED/);
    }
    // No destination's table was tried.
    assert.deepEqual(out.filter((l) => l.startsWith("{") && JSON.parse(l).table), []);
  });
});

Deno.test({
  name:
    "main() in loop mode syncs the other destinations while one refuses the login, and that one once it accepts (PostgreSQL)",
  ignore: REAL.ignoreReason !== undefined,
  async fn() {
    const pair = await REAL.pair();
    const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
    const root = postgres(Deno.env.get("SYNC_TEST_PG_URL")!, { max: 1, onnotice: () => {} });
    const stem = `sync_test_${crypto.randomUUID().slice(0, 8)}`;
    const role = `${stem}_role`;
    await root.unsafe(`CREATE DATABASE ${stem}_eu`);
    const eu = new URL(pair.destination.url);
    eu.pathname = `/${stem}_eu`;
    const euSql = postgres(eu.toString(), { max: 1, onnotice: () => {} });
    // The test server trusts loopback: a role that does not exist yet stands for a wrong password.
    eu.username = role;
    eu.password = "Pa55-word";
    let running: Promise<number> | undefined;
    const controller = new AbortController();
    try {
      await pair.owner.exec(
        `${SCHEMA}; INSERT INTO subject SELECT g, 'subject ' || g FROM generate_series(1, 50) g`,
      );
      await pair.destination.exec(SCHEMA);
      await euSql.unsafe(SCHEMA).simple();
      const config = await writeConfig(dir, {
        owner: "us",
        databases: { us: pair.owner.url, eu: eu.toString(), au: pair.destination.url },
        interval_seconds: 0.3,
        tables: TABLES,
      });
      const { out, err, io } = capture();
      running = main(["--config", config], { ...io, signal: controller.signal });
      const reports = () =>
        out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).filter((l) => l.table);
      const at = (region: string, status: string) =>
        reports().filter((r) => r.destination === region && r.status === status);
      await until(() => at("au", "applied").length === 1, "au synced while eu refuses the login");
      // Each attempt syncs au again: rows deleted there after the first are back.
      await pair.destination.exec(`DELETE FROM subject WHERE id > 40`);
      await until(() => at("au", "applied").length === 2, "au synced again");
      assert.ok(at("eu", "failed").length >= 2, JSON.stringify(reports()));
      assert.match(at("eu", "failed")[0].error, new RegExp(`^at "eu": .*"${role}"`));
      assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM subject`), ["50"]);
      await root.unsafe(`CREATE ROLE ${role} LOGIN SUPERUSER`);
      await until(() => at("eu", "applied").length === 1, "eu synced once it accepts the login");
      controller.abort();
      assert.equal(await running, 0);
      assert.doesNotMatch([...out, ...err].join("\n"), /Pa55-word|sync attempt failed/);
      const [{ count }] = await euSql`SELECT count(*)::int AS count FROM subject`;
      assert.equal(count, 50);
    } finally {
      controller.abort();
      await running;
      await euSql.end();
      await root.unsafe(`DROP DATABASE ${stem}_eu WITH (FORCE)`);
      await root.unsafe(`DROP ROLE IF EXISTS ${role}`);
      await root.end();
      await pair.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "main(): two overlapping runs against one destination both succeed (PostgreSQL)",
  ignore: REAL.ignoreReason !== undefined,
  async fn() {
    const pair = await REAL.pair();
    const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
    try {
      await pair.owner.exec(
        `${SCHEMA}; INSERT INTO subject SELECT g, 'subject ' || g FROM generate_series(1, 2000) g`,
      );
      // Only inserts are missing: without a lock the second run inserted what the first had.
      await pair.destination.exec(
        `${SCHEMA}; INSERT INTO subject SELECT g, 'subject ' || g FROM generate_series(1, 1900) g
         WHERE g % 7 <> 0`,
      );
      const config = await writeConfig(dir, {
        owner: "us",
        databases: { us: pair.owner.url, au: pair.destination.url },
        tables: TABLES,
      });
      // A cron run overlapping a manual run (or two replicas of the loop).
      const runs = await Promise.all([0, 1].map(async () => {
        const { out, io } = capture();
        const status = await main(["--config", config, "--once"], io);
        const reports = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
          .filter((l) => l.table);
        return { status, reports: reports.map((r) => [r.status, r.error]) };
      }));
      assert.deepEqual(runs.map((r) => r.status), [0, 0], JSON.stringify(runs));
      assert.deepEqual(runs.map((r) => r.reports[0][0]).sort(), ["applied", "in_sync"]);
      assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM subject`), ["2000"]);
    } finally {
      await pair.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "main(): a database that refuses the login is named by its region (PostgreSQL)",
  ignore: REAL.ignoreReason !== undefined,
  async fn() {
    const pair = await REAL.pair();
    const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
    try {
      await pair.owner.exec(SCHEMA);
      const url = new URL(pair.destination.url);
      url.pathname = "/vestibule_no_such_db"; // a misspelt or not yet created database
      const config = await writeConfig(dir, {
        owner: "us",
        databases: { us: pair.owner.url, au: url.toString() },
        tables: TABLES,
      });
      const { out, io } = capture();
      assert.equal(await main(["--config", config, "--once"], io), 1);
      // A destination's login failure fails its tables (not the attempt), each naming the region.
      assert.match(
        out.at(-1)!,
        /\nau public\.subject: at "au": database "vestibule_no_such_db" does not exist/,
      );
    } finally {
      await pair.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "main() in loop mode stops on a signal while another run holds the destination, and writes nothing (PostgreSQL)",
  ignore: REAL.ignoreReason !== undefined,
  async fn() {
    const pair = await REAL.pair();
    const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
    let running: Promise<number> | undefined;
    const lock = `SELECT pg_advisory_lock(${0x76657374})`;
    try {
      await pair.owner.exec(
        `${SCHEMA}; INSERT INTO subject SELECT g, 'subject ' || g FROM generate_series(1, 50) g`,
      );
      await pair.destination.exec(SCHEMA);
      // Another run (or one stuck with its session open) holds the destination's sync lock.
      await pair.destination.admin.unsafe(lock);
      const config = await writeConfig(dir, {
        owner: "us",
        databases: { us: pair.owner.url, au: pair.destination.url },
        tables: TABLES,
      });
      const { out, io } = capture();
      const controller = new AbortController();
      running = main(["--config", config], { ...io, signal: controller.signal });
      for (let i = 0;; i++) { // until the run has asked for the lock and been refused
        if (out.some((l) => l.includes('"msg":"sync attempt started"'))) {
          await new Promise((resolve) => setTimeout(resolve, 600));
          break;
        }
        assert.ok(i < 100, "the run never started");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      controller.abort(); // SIGTERM: no destination transaction of this run has begun
      let timer;
      const stopped = await Promise.race([
        running.then((status) => `exited ${status}`),
        new Promise<string>((resolve) => {
          timer = setTimeout(() => resolve("still waiting after 3 s"), 3000);
        }),
      ]);
      clearTimeout(timer);
      assert.equal(stopped, "exited 0");
      const lines = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
      // While it waited, the operator was told (a --once cron run must not hang in silence).
      assert.ok(
        lines.some((l) => l.msg === "another sync holds the destination, waiting"),
        out.join("\n"),
      );
      const report = lines.find((l) => l.table);
      assert.equal(report.status, "skipped");
      assert.match(report.error, /while another sync held "au"/);
      await pair.destination.admin.unsafe(`SELECT pg_advisory_unlock(${0x76657374})`);
      assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM subject`), ["0"]);
    } finally {
      await pair.destination.admin.unsafe(`SELECT pg_advisory_unlock_all()`);
      await running;
      await pair.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("main() --dry-run --once prints the plan and writes nothing", async () => {
  await withPair(async (pair, dir) => {
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      tables: TABLES,
    });
    const { out, io } = capture();
    assert.equal(await main(["--config", config, "--once", "--dry-run"], io), 0);
    const logs = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    const table = logs.find((l) => l.table === "public.subject");
    assert.equal(table?.inserts, 10);
    assert.match(out.at(-1)!.split("\n")[1], /^au +public\.subject +planned \(dry run\) +10 /);
    const [count] = await pair.destination.column(`SELECT count(*) FROM subject`);
    assert.equal(count, "40");
  });
});

Deno.test("main() --help prints the usage and exits 0", async () => {
  const { out, err, io } = capture();
  assert.equal(await main(["--help"], io), 0);
  assert.match(out.join("\n"), /^Usage: deno task sync/);
  assert.match(out.join("\n"), /--dry-run/);
  assert.deepEqual(err, []);
});

Deno.test("main() --table writes the named tables in config order, parents before children", async () => {
  await withPair(async (pair, dir) => {
    const schema = `CREATE TABLE kind (id int PRIMARY KEY, label text NOT NULL);
      CREATE TABLE item (id int PRIMARY KEY, kind_id int NOT NULL REFERENCES kind (id))`;
    await pair.owner.exec(
      `${schema}; INSERT INTO kind SELECT g, 'kind ' || g FROM generate_series(1, 3) g;
       INSERT INTO item SELECT g, 1 + g % 3 FROM generate_series(1, 9) g`,
    );
    await pair.destination.exec(schema);
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      tables: [
        { name: "public.kind", primary_key: ["id"], delete_missing: true },
        { name: "public.item", primary_key: ["id"], delete_missing: true },
      ],
    });
    const { out, io } = capture();
    const status = await main(
      ["--config", config, "--once", "--table", "item", "--table", "kind"],
      io,
    );
    assert.equal(status, 0, out.join("\n"));
    assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM item`), ["9"]);
    assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM kind`), ["3"]);
  });
});

Deno.test("main() in loop mode keeps waiting after the first 24.8-day timer of a 30-day interval fires", async () => {
  await withPair(async (pair, dir) => {
    const config = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      interval_seconds: 30 * 24 * 3600,
      tables: TABLES,
    });
    const out: string[] = [];
    let clock: ReturnType<typeof FakeTimers.install> | undefined;
    let waiting!: () => void;
    const summaryPrinted = new Promise<void>((resolve) => waiting = resolve);
    const controller = new AbortController();
    const running = main(["--config", config], {
      stdout: (line) => {
        out.push(line);
        // The summary is the last line before the delay: from here on, time is ours to move.
        if (!clock && line.startsWith("destination ")) {
          clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout", "Date"] });
          waiting();
        }
      },
      stderr: () => {},
      signal: controller.signal,
    });
    await summaryPrinted;
    const started = () => out.filter((l) => l.includes('"msg":"sync attempt started"')).length;
    try {
      await clock!.tickAsync(25 * 24 * 3600 * 1000); // past the 2^31 − 1 ms one timer can hold
      assert.equal(started(), 1, "a second attempt started 25 days into a 30-day interval");
    } finally {
      clock!.uninstall();
      controller.abort();
      assert.equal(await running, 0);
    }
  });
});

Deno.test("main() --once says on stderr, not only in the JSON log, why the attempt failed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
  try {
    // Port 1 on loopback refuses connections: the attempt fails before any table is diffed.
    const path = await writeConfig(dir, {
      owner: "us",
      databases: { us: "postgres://sync@127.0.0.1:1/app", au: "postgres://sync@127.0.0.1:1/other" },
      tables: TABLES,
    });
    const { out, err, io } = capture();
    assert.equal(await main(["--config", path, "--once"], io), 1);
    assert.ok(out.some((l) => l.includes('"msg":"sync attempt failed"')), out.join("\n"));
    assert.match(err.join("\n"), /ECONNREFUSED/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main(): a stop during a retry's backoff reports the table's own failure, not another sync holding it", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
  try {
    await pair.owner.exec(`${SCHEMA}; INSERT INTO subject VALUES (1, 'a')`);
    // A serialization failure on every try: the destination's sync is retried after a backoff.
    await pair.destination.exec(
      `${SCHEMA}; CREATE FUNCTION conflict() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001'; END $$;
        CREATE TRIGGER conflict BEFORE INSERT ON subject FOR EACH ROW EXECUTE FUNCTION conflict();`,
    );
    const path = await writeConfig(dir, {
      owner: "us",
      databases: { us: pair.owner.url, au: pair.destination.url },
      tables: TABLES,
    });
    const out: string[] = [];
    const controller = new AbortController();
    const status = await main(["--config", path, "--once"], {
      stdout: (line) => {
        out.push(line);
        // SIGTERM while the retry waits.
        if (line.includes('"msg":"transient failure, retrying"')) controller.abort();
      },
      stderr: () => {},
      signal: controller.signal,
    });
    assert.equal(status, 1);
    const report = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .find((l) => l.table);
    assert.ok(report, out.join("\n"));
    // Not retried once stopped, and reported with its own error: no other sync ever held "au",
    // where the report had sent the operator looking for a second process.
    assert.deepEqual([report.status, report.error], ["failed", "could not serialize"]);
  } finally {
    await pair.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() in loop mode stops at once on a signal while a destination that never answers is probed, its tables skipped", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  const dir = await Deno.makeTempDir({ prefix: "sync_cli_test_" });
  const silent = silentServer();
  try {
    await pair.owner.exec(`${SCHEMA}; INSERT INTO subject VALUES (1, 'a')`);
    await pair.destination.exec(SCHEMA);
    const path = await writeConfig(dir, {
      owner: "us",
      databases: {
        us: pair.owner.url,
        au: pair.destination.url,
        eu: `postgres://sync@127.0.0.1:${silent.port}/app`,
      },
      tables: TABLES,
    });
    const controller = new AbortController();
    const lines: string[] = [];
    const running = main(["--config", path], {
      stdout: (line) => lines.push(line),
      stderr: () => {},
      signal: controller.signal,
    });
    await new Promise((resolve) => setTimeout(resolve, 1000)); // probing eu: nothing written yet
    const stoppedAt = performance.now();
    controller.abort(); // what SIGTERM does
    assert.equal(await running, 0);
    // Every connect try and its backoff took about 40 s, past Kubernetes' 30 s grace period; then
    // the try under way still ran out its 10 s connect timeout.
    const seconds = (performance.now() - stoppedAt) / 1000;
    assert.ok(seconds < 3, `stopped ${seconds.toFixed(1)} s after the signal`);
    const eu = lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line))
      .filter((entry) => entry.destination === "eu");
    assert.deepEqual(eu.map(({ table, status, error }) => ({ table, status, error })), [{
      table: "public.subject",
      status: "skipped",
      error: 'Not attempted: the sync was stopped by a signal while "eu" was being reached',
    }]);
  } finally {
    await silent.close();
    await pair.close();
    await Deno.remove(dir, { recursive: true });
  }
});
