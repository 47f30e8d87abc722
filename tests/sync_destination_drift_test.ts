/**
 * @module Destinations that differ from the owner in ways the schema check does not see: another
 * server encoding, a trigger that rewrites synced values, a sequence too narrow for the synced ids.
 * Each was reported `applied` while the destination was not (or would not stay) in line.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { attemptAt, attemptOn, BACKENDS, fingerprint } from "./sync_fixtures.ts";

const backend = BACKENDS.find((b) => b.name === "postgres")!;
const PG_URL = Deno.env.get("SYNC_TEST_PG_URL");

Deno.test({
  name:
    "a destination database in another encoding (LATIN1) is refused, not rewritten on every run",
  // PGlite has one encoding.
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
    const stem = `sync_enc_${crypto.randomUUID().slice(0, 8)}`;
    const urlOf = (name: string) => {
      const url = new URL(PG_URL!);
      url.pathname = `/${name}`;
      return url.toString();
    };
    const urls = { us: urlOf(`${stem}_us`), au: urlOf(`${stem}_au`) };
    await admin.unsafe(`CREATE DATABASE ${stem}_us`);
    await admin.unsafe(
      `CREATE DATABASE ${stem}_au ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`,
    );
    const us = postgres(urls.us, { max: 1, onnotice: () => {} });
    const au = postgres(urls.au, { max: 1, onnotice: () => {} });
    try {
      await us.unsafe(`CREATE TABLE label (id int PRIMARY KEY, v text);
        INSERT INTO label VALUES (1, 'café'), (2, 'plain');`).simple();
      await au.unsafe(`CREATE TABLE label (id int PRIMARY KEY, v text);
        INSERT INTO label VALUES (1, 'café'), (2, 'plain');`).simple();
      const table = { name: "public.label", primary_key: ["id"] };
      // On main: every run reports 'applied' with one update of an equal row ('café' hashes as
      // other bytes in LATIN1), taking its row lock and firing its triggers, forever.
      await assert.rejects(
        attemptAt(urls, table),
        /Cannot sync table "public\.label": .*LATIN1/,
      );
      const [{ xmin }] = await au`SELECT xmin::text FROM label WHERE id = 1`;
      await assert.rejects(attemptAt(urls, table), /LATIN1/);
      const [{ xmin: after }] = await au`SELECT xmin::text FROM label WHERE id = 1`;
      assert.equal(after, xmin, "the equal row was rewritten");
    } finally {
      await us.end();
      await au.end();
      await admin.unsafe(`DROP DATABASE ${stem}_us WITH (FORCE)`);
      await admin.unsafe(`DROP DATABASE ${stem}_au WITH (FORCE)`);
      await admin.end();
    }
  },
});

Deno.test({
  name: "a destination trigger that rewrites synced values is not reported applied on every run",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      const ddl = `CREATE TABLE country (id int PRIMARY KEY, name text);`;
      await pair.owner.exec(ddl + `INSERT INTO country VALUES (1, 'Australia'), (2, 'Chad');`);
      // A region's own normalisation, added there only.
      await pair.destination.exec(
        ddl + `
        CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql
          AS $$BEGIN NEW.name := upper(NEW.name); RETURN NEW; END$$;
        CREATE TRIGGER shout BEFORE INSERT OR UPDATE ON country
          FOR EACH ROW EXECUTE FUNCTION shout();`,
      );
      const table = { name: "public.country", primary_key: ["id"] };
      for (const run of [1, 2]) {
        const [report] = await attemptOn(pair, [table]);
        if (report.status === "applied" || report.status === "in_sync") {
          // On main: 'applied' (2 inserts, then 2 updates on every later run) with AUSTRALIA/CHAD.
          assert.equal(
            await fingerprint(pair.destination, "country", "id"),
            await fingerprint(pair.owner, "country", "id"),
            `run ${run} reported ${report.status} (${report.inserts} inserts, ${report.updates} updates) but the destination differs`,
          );
        } else {
          assert.equal(report.status, "failed");
          assert.match(report.error ?? "", /public\.country.*column "name"/);
        }
      }
    } finally {
      await pair.close();
    }
  },
});

Deno.test({
  name: "a destination sequence too narrow for the synced ids is reported, not left to collide",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      // The owner finished an int -> bigint migration; the region altered the column but its
      // serial's sequence is still AS integer (ALTER COLUMN TYPE does not change it).
      await pair.owner.exec(`CREATE TABLE ticket (id bigserial PRIMARY KEY, v text);
        INSERT INTO ticket VALUES (5, 'a'), (3000000000, 'b');`);
      await pair.destination.exec(`CREATE TABLE ticket (id serial PRIMARY KEY, v text);
        ALTER TABLE ticket ALTER COLUMN id TYPE bigint;`);
      const [report] = await attemptOn(pair, [{ name: "public.ticket", primary_key: ["id"] }]);
      assert.equal(report.status, "applied", report.error);
      // On main: no warning, and the next local insert takes id 1..5, colliding with 5.
      assert.match(report.warnings?.join("\n") ?? "", /ticket_id_seq.*"id"/);
    } finally {
      await pair.close();
    }
  },
});

// The read-back after a write at a destination with a BEFORE trigger: it must catch a rewrite in a
// partitioned table's inserts, and must not fail tables it cannot fault.
Deno.test({
  name:
    "a destination trigger that rewrites inserted rows of a partitioned table is not reported applied",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      const ddl = `CREATE TABLE city (id int PRIMARY KEY, name text) PARTITION BY RANGE (id);
        CREATE TABLE city_low PARTITION OF city FOR VALUES FROM (0) TO (1000);`;
      await pair.owner.exec(ddl + `INSERT INTO city VALUES (1, 'Perth'), (2, 'Boston');`);
      await pair.destination.exec(
        ddl + `
        CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql
          AS $$BEGIN NEW.name := upper(NEW.name); RETURN NEW; END$$;
        CREATE TRIGGER shout BEFORE INSERT OR UPDATE ON city
          FOR EACH ROW EXECUTE FUNCTION shout();`,
      );
      const [report] = await attemptOn(pair, [{ name: "public.city", primary_key: ["id"] }]);
      if (report.status === "applied") {
        assert.equal(
          await fingerprint(pair.destination, "city", "id"),
          await fingerprint(pair.owner, "city", "id"),
          `reported applied (${report.inserts} inserts) but the destination differs`,
        );
      } else {
        assert.equal(report.status, "failed", report.error);
        assert.match(report.error ?? "", /public\.city.*column "name"/);
      }
    } finally {
      await pair.close();
    }
  },
});

Deno.test({
  name:
    "a destination trigger on an excluded column does not fail a composite-key table with NULLs",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      const ddl = `CREATE TABLE price (sku text, region char(3), amount numeric, note text,
          touched timestamptz, PRIMARY KEY (sku, region));`;
      await pair.owner.exec(
        ddl + `INSERT INTO price VALUES ('a', 'au', 1.50, NULL, NULL), ('a', 'us', NULL, 'x', NULL),
          ('b', 'au', 2.0, '', NULL);`,
      );
      await pair.destination.exec(
        ddl + `INSERT INTO price VALUES ('a', 'au', 9, 'old', NULL);
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql
          AS $$BEGIN NEW.touched := now(); RETURN NEW; END$$;
        CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON price
          FOR EACH ROW EXECUTE FUNCTION touch();`,
      );
      const table = {
        name: "public.price",
        primary_key: ["sku", "region"],
        exclude_columns: ["touched"],
      };
      const [first] = await attemptOn(pair, [table]);
      assert.equal(first.status, "applied", first.error);
      assert.deepEqual([first.inserts, first.updates], [2, 1]);
      const [second] = await attemptOn(pair, [table]);
      assert.equal(second.status, "in_sync", second.error);
    } finally {
      await pair.close();
    }
  },
});
