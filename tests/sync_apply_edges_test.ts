/**
 * @module Sync edges no other test reached (found by a mutation round): triggers on UPDATE, a
 * sequence exactly at the highest synced id, a descending sequence, interval[] keys, quotes in
 * column names, and an insert taking a value an update frees. Real PostgreSQL only.
 */
import assert from "node:assert/strict";
import { attemptOn, BACKENDS, fingerprint } from "./sync_fixtures.ts";

const backend = BACKENDS.find((b) => b.name === "postgres")!;

Deno.test({
  name:
    "sync: an interval[] key, whose equal values print differently, is refused before any write",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      const ddl = `CREATE TABLE span_key (k interval[] PRIMARY KEY, label text);`;
      // '{1 day}' and '{24:00:00}' are one key to PostgreSQL, two texts to the diff.
      await pair.owner.exec(ddl + `INSERT INTO span_key VALUES ('{1 day}', 'owner');`);
      await pair.destination.exec(ddl + `INSERT INTO span_key VALUES ('{24:00:00}', 'old');`);
      await assert.rejects(
        attemptOn(pair, [{ name: "public.span_key", primary_key: ["k"] }]),
        /primary key column "k" is interval\[\] at "us": equal keys of it can print differently/,
      );
      assert.deepEqual(await pair.destination.column(`SELECT label FROM span_key`), ["old"]);
    } finally {
      await pair.close();
    }
  },
});

Deno.test({
  name:
    "sync: a destination sequence whose next value is exactly the highest synced id is moved past it",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      const ddl = `CREATE TABLE seat (id serial PRIMARY KEY, name text);`;
      await pair.owner.exec(ddl + `INSERT INTO seat (name) VALUES ('a'), ('b'), ('c');`);
      // The region inserted ids 1 and 2 itself: its sequence's next value is 3, the owner's max.
      await pair.destination.exec(ddl + `INSERT INTO seat (name) VALUES ('a'), ('b');`);
      const [report] = await attemptOn(pair, [{ name: "public.seat", primary_key: ["id"] }]);
      assert.equal(report.status, "applied", report.error);
      assert.deepEqual([report.inserts, report.updates], [1, 0]);
      // A local insert after a failover takes a free id, not the synced 3.
      const [id] = await pair.destination.column(
        `INSERT INTO seat (name) VALUES ('local') RETURNING id`,
      );
      assert.equal(id, "4");
    } finally {
      await pair.close();
    }
  },
});

Deno.test({
  name: "sync: a destination BEFORE UPDATE trigger that rewrites synced values fails the table",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      const ddl = `CREATE TABLE land (id int PRIMARY KEY, name text);`;
      await pair.owner.exec(ddl + `INSERT INTO land VALUES (1, 'Australia'), (2, 'Chad');`);
      // Rows already there (no insert); the region's trigger fires on UPDATE only.
      await pair.destination.exec(
        ddl + `INSERT INTO land VALUES (1, 'old'), (2, 'old');
        CREATE FUNCTION shout_up() RETURNS trigger LANGUAGE plpgsql
          AS $$BEGIN NEW.name := upper(NEW.name); RETURN NEW; END$$;
        CREATE TRIGGER shout_up BEFORE UPDATE ON land FOR EACH ROW EXECUTE FUNCTION shout_up();`,
      );
      const [report] = await attemptOn(pair, [{ name: "public.land", primary_key: ["id"] }]);
      assert.equal(report.status, "failed", `reported ${report.status}, ${report.updates} updates`);
      assert.match(report.error ?? "", /public\.land.*column "name"/);
      assert.deepEqual(await pair.destination.column(`SELECT name FROM land ORDER BY id`), [
        "old",
        "old",
      ]);
    } finally {
      await pair.close();
    }
  },
});

Deno.test({
  name: "sync: a descending sequence feeding a synced column is left alone, with no warning",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      // A common split: synced rows have positive ids, the region's own rows count down.
      const ddl = `CREATE SEQUENCE local_ids INCREMENT BY -1 MAXVALUE -1;
        CREATE TABLE tag (id int PRIMARY KEY DEFAULT nextval('local_ids'), name text);`;
      await pair.owner.exec(ddl + `INSERT INTO tag VALUES (1, 'a'), (2, 'b');`);
      await pair.destination.exec(ddl + `INSERT INTO tag (name) VALUES ('local');`);
      const [report] = await attemptOn(pair, [{ name: "public.tag", primary_key: ["id"] }]);
      assert.equal(report.status, "applied", report.error);
      assert.deepEqual(report.warnings ?? [], []);
      const [id] = await pair.destination.column(
        `INSERT INTO tag (name) VALUES ('local 2') RETURNING id`,
      );
      assert.equal(id, "-2");
      assert.equal(
        await fingerprint(pair.destination, "(SELECT * FROM tag WHERE id > 0)", "id"),
        await fingerprint(pair.owner, "tag", "id"),
      );
    } finally {
      await pair.close();
    }
  },
});

Deno.test({
  name: "sync: a column named with a quote syncs where a destination BEFORE trigger is enabled",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      const ddl = `CREATE TABLE quip (id int PRIMARY KEY, "it's" text);`;
      await pair.owner.exec(ddl + `INSERT INTO quip VALUES (1, 'a'), (2, 'b');`);
      // A trigger that changes nothing: the sync still reads the written rows back.
      await pair.destination.exec(
        ddl + `INSERT INTO quip VALUES (1, 'old');
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
        CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON quip FOR EACH ROW EXECUTE FUNCTION touch();`,
      );
      const [report] = await attemptOn(pair, [{ name: "public.quip", primary_key: ["id"] }]);
      assert.equal(report.status, "applied", report.error);
      assert.deepEqual([report.inserts, report.updates], [1, 1]);
      assert.equal(
        await fingerprint(pair.destination, "quip", "id"),
        await fingerprint(pair.owner, "quip", "id"),
      );
    } finally {
      await pair.close();
    }
  },
});

Deno.test({
  name:
    "sync: an insert taking a UNIQUE value an update frees is applied by plain writes, not refused as a swap",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      // A table the sync does not write references the synced one ON DELETE CASCADE: any
      // delete + re-insert of its rows is refused, so only update-then-insert can apply this.
      const ddl = `CREATE TABLE course (id int PRIMARY KEY, code text NOT NULL UNIQUE);
        CREATE TABLE enrolment (id int PRIMARY KEY,
          course_id int NOT NULL REFERENCES course ON DELETE CASCADE);`;
      // The owner renamed course 1 from 'x' to 'y' and gave 'x' to a new course 2.
      await pair.owner.exec(ddl + `INSERT INTO course VALUES (1, 'y'), (2, 'x');`);
      await pair.destination.exec(
        ddl + `INSERT INTO course VALUES (1, 'x'); INSERT INTO enrolment VALUES (10, 1);`,
      );
      const [report] = await attemptOn(pair, [{ name: "public.course", primary_key: ["id"] }]);
      assert.equal(report.status, "applied", report.error);
      assert.deepEqual([report.inserts, report.updates], [1, 1]);
      assert.equal(
        await fingerprint(pair.destination, "course", "id"),
        await fingerprint(pair.owner, "course", "id"),
      );
      assert.deepEqual(await pair.destination.column(`SELECT course_id FROM enrolment`), ["1"]);
    } finally {
      await pair.close();
    }
  },
});

Deno.test({
  name: "sync: a column whose name holds a double quote syncs",
  ignore: backend.ignoreReason !== undefined,
  async fn() {
    const pair = await backend.pair();
    try {
      const ddl = `CREATE TABLE said (id int PRIMARY KEY, "say ""hi""" text);`;
      await pair.owner.exec(ddl + `INSERT INTO said VALUES (1, 'a'), (2, 'b'), (3, 'c');`);
      await pair.destination.exec(ddl + `INSERT INTO said VALUES (1, 'old'), (4, 'gone');`);
      const [report] = await attemptOn(pair, [{
        name: "public.said",
        primary_key: ["id"],
        delete_missing: true,
        max_delete_ratio: 1,
      }]);
      assert.equal(report.status, "applied", report.error);
      assert.deepEqual([report.inserts, report.updates, report.deletes], [2, 1, 1]);
      assert.equal(
        await fingerprint(pair.destination, "said", "id"),
        await fingerprint(pair.owner, "said", "id"),
      );
    } finally {
      await pair.close();
    }
  },
});
