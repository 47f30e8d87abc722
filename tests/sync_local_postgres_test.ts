/**
 * @module The throwaway PostgreSQL cluster `deno task bench:sync` starts with initdb: reachable
 * by URL on loopback, and gone with its files once stopped.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { findBin, startLocalPostgres } from "../sync/local_postgres.ts";

/** Whether initdb is installed where startLocalPostgres() looks for it. */
function hasInitdb(): boolean {
  const dirs = ["/usr/local/bin", "/usr/bin"];
  try {
    for (const entry of Deno.readDirSync("/usr/lib/postgresql")) {
      dirs.push(`/usr/lib/postgresql/${entry.name}/bin`);
    }
  } catch {
    // Not a Debian layout.
  }
  return dirs.some((dir) => {
    try {
      Deno.statSync(`${dir}/initdb`);
      return true;
    } catch {
      return false;
    }
  });
}

// Steps, not tests, may be ignored where PostgreSQL is missing: CI fails a whole test ignored.
Deno.test("startLocalPostgres(), the throwaway cluster of deno task bench:sync", async (t) => {
  await t.step({
    name:
      "it serves a C-collated cluster on 127.0.0.1, and stop() shuts it down and removes its files",
    ignore: !hasInitdb(),
    fn: serveAndStop,
  });
  await t.step({
    name: "one that cannot start the cluster leaves no directory behind",
    // As root the cluster runs as "postgres", which cannot enter a directory only root may.
    ignore: !hasInitdb() || Deno.uid() !== 0,
    fn: failToStart,
  });
});

async function serveAndStop() {
  const tmp = await Deno.makeTempDir({ prefix: "sync_local_pg_test_" });
  let cluster;
  try {
    await Deno.chmod(tmp, 0o755); // as root, the cluster runs as "postgres"
    const before = Deno.env.get("TMPDIR");
    Deno.env.set("TMPDIR", tmp);
    try {
      cluster = await startLocalPostgres();
    } finally {
      if (before === undefined) Deno.env.delete("TMPDIR");
      else Deno.env.set("TMPDIR", before);
    }
    assert.ok(cluster);
    const url = new URL(cluster.url);
    assert.equal(url.hostname, "127.0.0.1");
    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      const [{ version }] = await sql`SELECT current_setting('server_version_num')::int AS version`;
      // The bench relies on hashtextextended (PostgreSQL 11+).
      assert.ok(version >= 110000, String(version));
      const [{ listen }] = await sql`SELECT current_setting('listen_addresses') AS listen`;
      assert.equal(listen, "127.0.0.1");
      // The README's text-key figures are for a C-collated database (no explicit COLLATE "C",
      // so the primary key index serves the ranges), written without fsync, whatever the
      // machine's locale.
      const [{ collate, fsync }] = await sql`SELECT datcollate AS collate,
        current_setting('fsync') AS fsync FROM pg_database WHERE datname = current_database()`;
      assert.deepEqual({ collate, fsync }, { collate: "C", fsync: "off" });
    } finally {
      await sql.end();
    }
    const stopping = cluster;
    cluster = undefined;
    await stopping.stop();
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: Number(url.port) }),
      Deno.errors.ConnectionRefused,
    );
    assert.deepEqual(await Array.fromAsync(Deno.readDir(tmp)), [], "the cluster's files remain");
  } finally {
    await cluster?.stop();
    await Deno.remove(tmp, { recursive: true });
  }
}

async function failToStart() {
  const tmp = await Deno.makeTempDir({ prefix: "sync_local_pg_test_" });
  try {
    await Deno.chmod(tmp, 0o700);
    const before = Deno.env.get("TMPDIR");
    Deno.env.set("TMPDIR", tmp);
    try {
      await assert.rejects(startLocalPostgres(), /Cannot run ".*initdb"/);
    } finally {
      if (before === undefined) Deno.env.delete("TMPDIR");
      else Deno.env.set("TMPDIR", before);
    }
    assert.deepEqual(
      await Array.fromAsync(Deno.readDir(tmp)),
      [],
      "a failed start left its files",
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

// A Debian host mid-upgrade keeps /usr/lib/postgresql/13 and /16: bench:sync takes the newest.
Deno.test("with several PostgreSQL versions installed, the newest serves the cluster (16 over 9.6)", async () => {
  const root = await Deno.makeTempDir({ prefix: "sync_local_pg_bin_test_" });
  try {
    for (const version of ["9.6", "16", "13"]) {
      await Deno.mkdir(`${root}/${version}/bin`, { recursive: true });
      for (const tool of ["initdb", "pg_ctl"]) {
        await Deno.writeTextFile(`${root}/${version}/bin/${tool}`, "");
      }
    }
    assert.equal(await findBin(root), `${root}/16/bin`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
