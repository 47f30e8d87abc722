/**
 * @module A database error whose text quotes the password (a constraint, column or trigger
 * message named after it) is scrubbed on every path the sync reports it by: the failed table, the
 * shared transaction's warning, a retry line, a refused attempt, and the reason a signal left a
 * table skipped after that transaction failed.
 */
import assert from "node:assert/strict";
import { main } from "../sync/cli.ts";
import { type Pair, QUICKEST_BACKEND } from "./sync_fixtures.ts";

const PASSWORD = "Pa55-word-x9";

/** `url` with a password; the test servers trust loopback logins, so it is accepted and unused. */
function withPassword(url: string): string {
  const out = new URL(url);
  out.password = PASSWORD;
  return out.toString();
}

/**
 * Runs `main --once` over a fresh pair, set up by `setUp`, for `tables` (keyed by `id`), with
 * the password in the destination's URL. `stopAt` aborts the run after the first stdout line it
 * matches.
 */
async function syncOnce(
  setUp: (pair: Pair) => Promise<void>,
  tables: string[],
  stopAt?: RegExp,
) {
  const pair = await QUICKEST_BACKEND.pair();
  const dir = await Deno.makeTempDir({ prefix: "sync_error_password_test_" });
  try {
    await setUp(pair);
    const config = `${dir}/sync.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        owner: "us",
        databases: { us: pair.owner.url, au: withPassword(pair.destination.url) },
        tables: tables.map((name) => ({ name, primary_key: ["id"] })),
      }),
    );
    const out: string[] = [];
    const err: string[] = [];
    const controller = new AbortController();
    const status = await main(["--config", config, "--once"], {
      stdout: (line) => {
        out.push(line);
        if (stopAt?.test(line)) controller.abort();
      },
      stderr: (line) => err.push(line),
      signal: controller.signal,
    });
    const rows = await pair.destination.column(`SELECT count(*) FROM ${tables[0]}`);
    return { status, err: err.join("\n"), printed: [...out, ...err].join("\n"), rows };
  } finally {
    await pair.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("main() never prints a password that a destination error quotes, even for a table a signal skipped", async () => {
  const setUp = async (pair: Pair) => {
    const ddl = `CREATE TABLE broken (id int PRIMARY KEY, label text);
      CREATE TABLE healthy (id int PRIMARY KEY, label text);`;
    await pair.owner.exec(
      ddl + `INSERT INTO broken VALUES (1, 'no'); INSERT INTO healthy VALUES (1, 'a');`,
    );
    await pair.destination.exec(
      ddl + `ALTER TABLE broken ADD CONSTRAINT "${PASSWORD}" CHECK (label <> 'no');`,
    );
  };
  for (const stopAt of [undefined, /syncing table by table/]) {
    const run = await syncOnce(setUp, ["public.broken", "public.healthy"], stopAt);
    assert.equal(run.status, 1);
    assert.doesNotMatch(run.printed, new RegExp(PASSWORD));
    // The failure is still reported, with the constraint's name masked.
    assert.match(run.printed, /check constraint \\?"\*\*\*\\?"/);
    assert.deepEqual(run.rows, ["0"]);
  }
});

Deno.test("main() never prints a password that a transient failure quotes, in its retry lines", async () => {
  const run = await syncOnce(async (pair) => {
    const ddl = `CREATE TABLE flaky (id int PRIMARY KEY, label text);`;
    await pair.owner.exec(ddl + `INSERT INTO flaky VALUES (1, 'a');`);
    // A serialization failure on every try, its message quoting the password's text.
    await pair.destination.exec(
      ddl + `CREATE FUNCTION flaky_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'conflict with "${PASSWORD}"' USING ERRCODE = '40001'; END $$;
        CREATE TRIGGER flaky_conflict BEFORE INSERT ON flaky
          FOR EACH ROW EXECUTE FUNCTION flaky_conflict();`,
    );
  }, ["public.flaky"]);
  assert.equal(run.status, 1);
  assert.doesNotMatch(run.printed, new RegExp(PASSWORD));
  assert.match(run.printed, /transient failure, retrying.*conflict with \\"\*\*\*\\"/);
});

Deno.test("main() never prints a password that a refused attempt quotes", async () => {
  const run = await syncOnce(async (pair) => {
    // A column only the owner has, named like the password: the refusal names it.
    await pair.owner.exec(`CREATE TABLE shape (id int PRIMARY KEY, "${PASSWORD}" text);`);
    await pair.destination.exec(`CREATE TABLE shape (id int PRIMARY KEY);`);
  }, ["public.shape"]);
  assert.equal(run.status, 1);
  assert.doesNotMatch(run.printed, new RegExp(PASSWORD));
  assert.match(run.err, /Cannot sync table "public.shape": column "\*\*\*" is missing at "au"/);
});
