/**
 * @module The owner's read-only transaction is idle while the destination writes (a slow trigger,
 * a row lock held by the app): a server-side idle_in_transaction_session_timeout must not crash
 * the sync process (and with it loop mode) half-way through a destination.
 */
import assert from "node:assert/strict";
import { inTempDir, runCli } from "./_cli.ts";
import { BACKENDS } from "./sync_fixtures.ts";

const backend = BACKENDS.find((b) => b.name === "postgres")!;

Deno.test({
  name:
    "owner idle timeout: a destination slower than the owner's idle_in_transaction_session_timeout is synced, the process survives",
  // PGlite serves one session, which a database setting never reaches.
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    const owner = new URL(pair.owner.url).pathname.slice(1);
    try {
      const ddl = `CREATE TABLE lesson (id int PRIMARY KEY, body text NOT NULL);`;
      await pair.owner.exec(
        ddl + `INSERT INTO lesson SELECT g, 'lesson ' || g FROM generate_series(1, 3000) g;
          ALTER DATABASE ${owner} SET idle_in_transaction_session_timeout = '200ms';`,
      );
      // Each insert statement takes 0.4 s at the destination (an audit trigger, a lock wait).
      await pair.destination.exec(
        ddl + `CREATE FUNCTION slow_audit() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep(0.4); RETURN NULL; END $$;
          CREATE TRIGGER slow_audit AFTER INSERT ON lesson
            FOR EACH STATEMENT EXECUTE FUNCTION slow_audit();`,
      );
      await inTempDir(async (dir) => {
        const config = `${dir}/sync.json`;
        await Deno.writeTextFile(
          config,
          JSON.stringify({
            owner: "us",
            databases: { us: pair.owner.url, au: pair.destination.url },
            tables: [{ name: "public.lesson", primary_key: ["id"] }],
          }),
        );
        const { code, stdout, stderr } = await runCli("sync/cli.ts", [
          "--config",
          config,
          "--once",
        ]);
        assert.doesNotMatch(stderr, /TypeError/);
        assert.equal(code, 0, stderr);
        assert.match(stdout, /"table":"public\.lesson".*"status":"applied"/);
      });
      assert.deepEqual(await pair.destination.column(`SELECT count(*) FROM lesson`), ["3000"]);
    } finally {
      await pair.owner.exec(`ALTER DATABASE ${owner} RESET idle_in_transaction_session_timeout`);
      await pair.close();
    }
  },
});
