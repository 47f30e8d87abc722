/**
 * @module A database error whose text quotes the password (here a constraint named after it) is
 * scrubbed on every path the sync reports it by: the failed table, the shared transaction's
 * warning, and the reason a signal left a table skipped after that transaction failed.
 */
import assert from "node:assert/strict";
import { main } from "../sync/cli.ts";
import { QUICKEST_BACKEND } from "./sync_fixtures.ts";

const PASSWORD = "Pa55-word-x9";

/** `url` with a password; the test servers trust loopback logins, so it is accepted and unused. */
function withPassword(url: string): string {
  const out = new URL(url);
  out.password = PASSWORD;
  return out.toString();
}

Deno.test("main() never prints a password that a destination error quotes, even for a table a signal skipped", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  const dir = await Deno.makeTempDir({ prefix: "sync_error_password_test_" });
  try {
    const ddl = `CREATE TABLE broken (id int PRIMARY KEY, label text);
      CREATE TABLE healthy (id int PRIMARY KEY, label text);`;
    await pair.owner.exec(
      ddl + `INSERT INTO broken VALUES (1, 'no'); INSERT INTO healthy VALUES (1, 'a');`,
    );
    await pair.destination.exec(
      ddl + `ALTER TABLE broken ADD CONSTRAINT "${PASSWORD}" CHECK (label <> 'no');`,
    );
    const config = `${dir}/sync.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        owner: "us",
        databases: { us: pair.owner.url, au: withPassword(pair.destination.url) },
        tables: [
          { name: "public.broken", primary_key: ["id"] },
          { name: "public.healthy", primary_key: ["id"] },
        ],
      }),
    );
    for (const stopAfterSharedFailure of [false, true]) {
      const out: string[] = [];
      const err: string[] = [];
      const controller = new AbortController();
      const status = await main(["--config", config, "--once"], {
        stdout: (line) => {
          out.push(line);
          if (stopAfterSharedFailure && line.includes("syncing table by table")) controller.abort();
        },
        stderr: (line) => err.push(line),
        signal: controller.signal,
      });
      assert.equal(status, 1);
      const printed = [...out, ...err].join("\n");
      assert.doesNotMatch(printed, new RegExp(PASSWORD));
      // The failure is still reported, with the constraint's name masked.
      assert.match(printed, /check constraint \\?"\*\*\*\\?"/);
    }
    assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM broken`), ["0"]);
  } finally {
    await pair.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() never prints a password that a transient failure quotes, in its retry lines", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  const dir = await Deno.makeTempDir({ prefix: "sync_error_password_test_" });
  try {
    const ddl = `CREATE TABLE flaky (id int PRIMARY KEY, label text);`;
    await pair.owner.exec(ddl + `INSERT INTO flaky VALUES (1, 'a');`);
    // A serialization failure on every try, its message quoting the password's text.
    await pair.destination.exec(
      ddl + `CREATE FUNCTION flaky_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'conflict with "${PASSWORD}"' USING ERRCODE = '40001'; END $$;
        CREATE TRIGGER flaky_conflict BEFORE INSERT ON flaky
          FOR EACH ROW EXECUTE FUNCTION flaky_conflict();`,
    );
    const config = `${dir}/sync.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        owner: "us",
        databases: { us: pair.owner.url, au: withPassword(pair.destination.url) },
        tables: [{ name: "public.flaky", primary_key: ["id"] }],
      }),
    );
    const out: string[] = [];
    const err: string[] = [];
    const status = await main(["--config", config, "--once"], {
      stdout: (line) => out.push(line),
      stderr: (line) => err.push(line),
    });
    assert.equal(status, 1);
    const printed = [...out, ...err].join("\n");
    assert.doesNotMatch(printed, new RegExp(PASSWORD));
    assert.match(printed, /transient failure, retrying.*conflict with \\"\*\*\*\\"/);
  } finally {
    await pair.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() never prints a password that a refused attempt quotes", async () => {
  const pair = await QUICKEST_BACKEND.pair();
  const dir = await Deno.makeTempDir({ prefix: "sync_error_password_test_" });
  try {
    // A column only the owner has, named like the password: the refusal names it.
    await pair.owner.exec(`CREATE TABLE shape (id int PRIMARY KEY, "${PASSWORD}" text);`);
    await pair.destination.exec(`CREATE TABLE shape (id int PRIMARY KEY);`);
    const config = `${dir}/sync.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        owner: "us",
        databases: { us: pair.owner.url, au: withPassword(pair.destination.url) },
        tables: [{ name: "public.shape", primary_key: ["id"] }],
      }),
    );
    const out: string[] = [];
    const err: string[] = [];
    const status = await main(["--config", config, "--once"], {
      stdout: (line) => out.push(line),
      stderr: (line) => err.push(line),
    });
    assert.equal(status, 1);
    const printed = [...out, ...err].join("\n");
    assert.doesNotMatch(printed, new RegExp(PASSWORD));
    assert.match(
      err.join("\n"),
      /Cannot sync table "public.shape": column "\*\*\*" is missing at "au"/,
    );
  } finally {
    await pair.close();
    await Deno.remove(dir, { recursive: true });
  }
});
