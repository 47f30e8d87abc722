/** @module `deno task sync:demo`: two embedded PGlite regions, a drifted copy, one sync. */
import { startEmbeddedPostgres } from "./embedded.ts";
import { main } from "./cli.ts";

const SCHEMA = `
  CREATE TABLE subject (
    id integer PRIMARY KEY, name text NOT NULL, meta jsonb, created_at timestamptz,
    weight numeric(8,3), icon bytea
  );
  CREATE TABLE curriculum (
    country text, code text, title text NOT NULL, updated_at timestamptz DEFAULT now(),
    PRIMARY KEY (country, code)
  );`;

const OWNER_ROWS = `
  INSERT INTO subject
    SELECT g, 'Subject ' || g || ' — ü', jsonb_build_object('level', g % 5, 'tags', jsonb_build_array('a', 'b')),
      '2024-02-29 12:34:56.123456+00'::timestamptz + g * interval '1 minute', g / 8.0,
      decode(lpad(to_hex(g), 8, '0'), 'hex')
    FROM generate_series(1, 2000) AS g;
  INSERT INTO curriculum (country, code, title)
    SELECT c, 'C' || g, 'Course ' || g FROM unnest(ARRAY['au', 'us', 'nz']) AS c,
      generate_series(1, 300) AS g;`;

/** The destination drifted: rows missing, rows edited, rows that only it has. */
const DRIFT = `
  DELETE FROM subject WHERE id % 97 = 0;
  UPDATE subject SET name = name || ' (edited)' WHERE id % 151 = 0;
  UPDATE subject SET meta = meta || '{"local": true}' WHERE id % 211 = 0;
  INSERT INTO subject VALUES (900001, 'local only', NULL, NULL, NULL, NULL);
  DELETE FROM curriculum WHERE code = 'C7';
  UPDATE curriculum SET title = 'Renamed', updated_at = now() - interval '1 day' WHERE code = 'C9';
  INSERT INTO curriculum (country, code, title) VALUES ('au', 'LOCAL', 'Only here');`;

const CONFIG = {
  owner: "us",
  databases: { us: "${US_DATABASE_URL}", au: "${AU_DATABASE_URL}" },
  interval_seconds: 60,
  tables: [
    { name: "public.subject", primary_key: ["id"], delete_missing: true },
    {
      name: "public.curriculum",
      primary_key: ["country", "code"],
      exclude_columns: ["updated_at"],
    },
  ],
};

const us = await startEmbeddedPostgres();
const au = await startEmbeddedPostgres();
const dir = await Deno.makeTempDir({ prefix: "sync_demo_" });
let status = 1;
try {
  await us.db.exec(SCHEMA + OWNER_ROWS);
  await au.db.exec(SCHEMA + OWNER_ROWS + DRIFT);
  const config = `${dir}/sync.json`;
  await Deno.writeTextFile(config, JSON.stringify(CONFIG, null, 2));
  const env = (name: string) => ({ US_DATABASE_URL: us.url, AU_DATABASE_URL: au.url })[name];
  const io = { stdout: console.log, stderr: console.error, env };
  console.log("# Dry run: the plan, nothing written\n");
  await main(["--config", config, "--once", "--dry-run"], io);
  console.log("\n# Sync\n");
  status = await main(["--config", config, "--once"], io);
  console.log("\n# Second sync: nothing left to do\n");
  status ||= await main(["--config", config, "--once"], io);
} finally {
  await us.close();
  await au.close();
  await Deno.remove(dir, { recursive: true });
}
Deno.exit(status);
