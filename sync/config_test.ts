import assert from "node:assert/strict";
import { loadSyncConfig, parseSyncConfig } from "./config.ts";
import { syncConfigJsonSchema } from "./write_schema.ts";

const ENV: Record<string, string> = {
  US_DATABASE_URL: "postgres://sync:s3cret@us.example:5432/app",
  AU_DATABASE_URL: "postgres://sync:s3cret@au.example:5432/app",
};
const env = (name: string) => ENV[name];

function config(overrides: Record<string, unknown> = {}) {
  return {
    owner: "us",
    databases: { us: "${US_DATABASE_URL}", au: "${AU_DATABASE_URL}" },
    tables: [{ name: "public.subject", primary_key: ["id"], delete_missing: true }],
    ...overrides,
  };
}

function refuses(input: unknown, message: string | RegExp, errorClass = TypeError) {
  assert.throws(() => parseSyncConfig(input, env), (error: unknown) => {
    assert.ok(error instanceof errorClass, `expected ${errorClass.name}, got ${error}`);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

Deno.test("parseSyncConfig() fills defaults and expands env references", () => {
  const parsed = parseSyncConfig(
    config({ tables: [{ name: "curriculum", primary_key: ["country", "code"] }] }),
    env,
  );
  assert.equal(parsed.databases.us, ENV.US_DATABASE_URL);
  assert.equal(parsed.interval_seconds, 60);
  assert.deepEqual(parsed.tables, [{
    name: "public.curriculum",
    primary_key: ["country", "code"],
    exclude_columns: [],
    delete_missing: false,
    max_delete_ratio: 0.1,
  }]);
});

Deno.test("parseSyncConfig() takes max_delete_ratio per table over the top level", () => {
  const parsed = parseSyncConfig(
    config({
      max_delete_ratio: 0.3,
      tables: [
        { name: "a", primary_key: ["id"] },
        { name: "b", primary_key: ["id"], max_delete_ratio: 0.5 },
      ],
    }),
    env,
  );
  assert.deepEqual(parsed.tables.map((t) => t.max_delete_ratio), [0.3, 0.5]);
});

Deno.test("parseSyncConfig() refuses each invalid config with a message naming the field", async (t) => {
  await t.step("unknown key", () =>
    refuses(
      config({ intervall_seconds: 5 }),
      'Cannot load sync config: ✖ Unrecognized key: "intervall_seconds"',
    ));
  await t.step("unknown table key", () =>
    refuses(
      config({ tables: [{ name: "a", primary_key: ["id"], delete_mising: true }] }),
      /Unrecognized key: "delete_mising"\n {2}→ at tables\[0\]/,
    ));
  await t.step("owner not in databases", () =>
    refuses(
      config({ owner: "eu" }),
      'Cannot load sync config: owner "eu" is not in databases ("us", "au")',
    ));
  await t.step("missing env variable", () =>
    refuses(
      config({ databases: { us: "${US_DATABASE_URL}", au: "${NOPE_URL}" } }),
      'Cannot load sync config: environment variable "NOPE_URL" is not set (used in databases.au)',
    ));
  await t.step("not a postgres URL", () =>
    refuses(
      config({ databases: { us: "${US_DATABASE_URL}", au: "mysql://x/y" } }),
      "Cannot load sync config: databases.au is not a postgres:// URL",
    ));
  // npm:postgres reads a part left out from PGHOST (else localhost) and PGDATABASE (else the
  // user's name): with an empty `${AU_HOST}` (a blank compose entry) a sync wrote into the server
  // a shell's PG* variables named, which the config never does.
  for (
    const [what, au, values, message] of [
      [
        "no host once an empty ${AU_HOST} is read",
        "postgres://${AU_HOST}/app",
        { AU_HOST: "" },
        "databases.au names no host once its ${…} references are read (npm:postgres would use " +
        "PGHOST, else localhost): write it in the URL",
      ],
      [
        "no database once an empty ${AU_DB} is read",
        "postgres://sync@au.example/${AU_DB}",
        { AU_DB: "" },
        "databases.au names no database once its ${…} references are read (npm:postgres would " +
        "use PGDATABASE, else the user): write it in the URL",
      ],
      [
        "no host, written so",
        "postgres://sync:pw@/app",
        {},
        "databases.au names no host (npm:postgres would use PGHOST, else localhost): write it in " +
        "the URL",
      ],
      [
        "no database, written so (a slash alone, a query)",
        "postgresql://sync@au.example/?sslmode=require",
        {},
        "databases.au names no database (npm:postgres would use PGDATABASE, else the user): " +
        "write it in the URL",
      ],
    ] as const
  ) {
    await t.step(what, () =>
      assert.throws(
        () =>
          parseSyncConfig(
            config({ databases: { us: "${US_DATABASE_URL}", au } }),
            (name) => (values as Record<string, string>)[name] ?? env(name),
          ),
        new TypeError(`Cannot load sync config: ${message}`),
      ));
  }
  await t.step("several hosts (a primary and a standby)", () =>
    refuses(
      config({
        databases: {
          us: "${US_DATABASE_URL}",
          au: "postgres://sync:pw@au-primary.internal:5432,au-standby.internal:5432/app",
        },
      }),
      "Cannot load sync config: databases.au lists several hosts: name the one to sync with (a " +
        "destination's primary, which takes the writes; percent-encode @ and , in a password)",
    ));
  // npm:postgres reads hosts `ss` and `word@au.example` with the password `p`: the sync hung.
  await t.step(
    "several hosts as the driver reads an unencoded @ and , in the password",
    () =>
      refuses(
        config({
          databases: { us: "${US_DATABASE_URL}", au: "postgres://sync:p@ss,word@au.example/app" },
        }),
        /databases\.au lists several hosts/,
      ),
  );
  // npm:postgres decodes the part after the first @ before it looks for the list.
  for (const comma of ["%2C", "%2c"]) {
    await t.step(`several hosts with the comma written ${comma}`, () =>
      refuses(
        config({
          databases: { us: "${US_DATABASE_URL}", au: `postgres://sync:pw@db1${comma}db2/app` },
        }),
        /databases\.au lists several hosts/,
      ));
  }
  // The database is the path; a / in the query is none, and the driver would use PGDATABASE.
  await t.step("no database, a / only in the query", () =>
    refuses(
      config({
        databases: {
          us: "${US_DATABASE_URL}",
          au: "postgres://sync:pw@au.example:5432?sslrootcert=/etc/ca.pem",
        },
      }),
      /databases\.au names no database/,
    ));
  await t.step("a scheme not at the start (a JDBC URL)", () =>
    refuses(
      config({
        databases: { us: "${US_DATABASE_URL}", au: "jdbc:postgresql://au.example:5432/app" },
      }),
      "Cannot load sync config: databases.au is not a postgres:// URL",
    ));
  // It splits the host at `:`: `[::1]:5432` is the host `[`, which it can never dial.
  for (const au of ["postgres://sync:pw@[::1]:5432/app", "postgresql://sync@[2001:db8::5]/app"]) {
    await t.step(`an IPv6 address: ${au}`, () =>
      refuses(
        config({ databases: { us: "${US_DATABASE_URL}", au } }),
        "Cannot load sync config: databases.au names an IPv6 address, which npm:postgres cannot " +
          "connect to: use a host name for it",
      ));
  }
  await t.step("a password with a raw %", () =>
    refuses(
      config({
        databases: { us: "${US_DATABASE_URL}", au: "postgres://alice:S3cr%zzPw@127.0.0.1/db" },
      }),
      "Cannot load sync config: databases.au has a malformed %-escape in its user or password (write % as %25)",
    ));
  await t.step("a single database", () =>
    refuses(
      config({ databases: { us: "${US_DATABASE_URL}" } }),
      "Cannot load sync config: databases needs the owner and one destination",
    ));
  await t.step("excluded primary key column", () =>
    refuses(
      config({ tables: [{ name: "a", primary_key: ["id"], exclude_columns: ["id"] }] }),
      'Cannot load sync config: table "public.a" excludes primary key column "id"',
    ));
  await t.step("columns without the key", () =>
    refuses(
      config({ tables: [{ name: "a", primary_key: ["id"], columns: ["name"] }] }),
      'Cannot load sync config: table "public.a" columns lack primary key column "id"',
    ));
  await t.step("a column listed twice (every run failed on the SQL error)", async (t) => {
    const tables = {
      primary_key: [{ name: "a", primary_key: ["id", "id"] }],
      columns: [{ name: "a", primary_key: ["id"], columns: ["id", "name", "name"] }],
      exclude_columns: [{ name: "a", primary_key: ["id"], exclude_columns: ["name", "name"] }],
    };
    for (const [field, table] of Object.entries(tables)) {
      const twice = field === "primary_key" ? "id" : "name";
      await t.step(field, () =>
        refuses(
          config({ tables: table }),
          `Cannot load sync config: table "public.a" ${field} lists column "${twice}" twice`,
        ));
    }
  });
  await t.step(
    "libpq's ?password=, which npm:postgres sends to the server as a setting",
    () =>
      refuses(
        config({
          databases: {
            us: "${US_DATABASE_URL}",
            au: "postgres://alice@127.0.0.1/db?password=S3cr",
          },
        }),
        "Cannot load sync config: databases.au has its password as ?password=, which npm:postgres does not read: write it in the URL (postgres://user:PASSWORD@host/db)",
      ),
  );
  await t.step(
    "libpq's ?password= after another parameter",
    () =>
      refuses(
        config({
          databases: {
            us: "${US_DATABASE_URL}",
            au: "postgres://alice@10.0.0.1:5432/db?sslmode=require&password=S3cr",
          },
        }),
        /^Cannot load sync config: databases\.au has its password as \?password=/,
      ),
  );
  await t.step("table listed twice", () =>
    refuses(
      config({
        tables: [{ name: "a", primary_key: ["id"] }, { name: "public.a", primary_key: ["id"] }],
      }),
      'Cannot load sync config: table "public.a" is listed twice',
    ));
  await t.step("ratio out of range", () =>
    refuses(
      config({ max_delete_ratio: 1.5 }),
      /^Cannot load sync config: ✖ Too big: expected number to be <=1\n {2}→ at max_delete_ratio$/,
    ));
  await t.step("bad table name", () =>
    refuses(
      config({ tables: [{ name: "a;drop", primary_key: ["id"] }] }),
      /Expected a table name like "public.subject"\n {2}→ at tables\[0\]\.name/,
    ));
  await t.step("no tables", () => refuses(config({ tables: [] }), /→ at tables/));
});

Deno.test("parseSyncConfig() names the table of a field at fault inside tables[i], not only its index", async (t) => {
  const tables = [
    { name: "public.subject", primary_key: ["id"] },
    { name: "curriculum", primary_key: "code" },
  ];
  await t.step("a field of the second table", () =>
    refuses(
      config({ tables }),
      /^Cannot load sync config: ✖ .*\n {2}→ at tables\[1\] \(table "curriculum"\)\.primary_key$/,
    ));
  await t.step("an unknown key of the second table", () =>
    refuses(
      config({ tables: [tables[0], { name: "public.x", primary_key: ["id"], delete_mising: 1 }] }),
      /Unrecognized key: "delete_mising"\n {2}→ at tables\[1\] \(table "public\.x"\)$/,
    ));
  await t.step("every table at fault, not only the first", () =>
    refuses(
      config({
        tables: [{ name: "public.a", primary_key: "id" }, { name: "public.b", primary_key: "id" }],
      }),
      /→ at tables\[0\] \(table "public\.a"\)\.primary_key[^]*→ at tables\[1\] \(table "public\.b"\)\.primary_key/,
    ));
  await t.step("not where the name itself is at fault, or is no string", () => {
    refuses(
      config({ tables: [{ name: "a;drop", primary_key: ["id"] }] }),
      /\n {2}→ at tables\[0\]\.name$/,
    );
    refuses(
      config({ tables: [{ name: 7, primary_key: "id" }] }),
      /\n {2}→ at tables\[0\]\.primary_key$/m,
    );
  });
});

Deno.test("loadSyncConfig() refuses a missing file, invalid JSON, a key written twice and text not in UTF-8", async () => {
  await assert.rejects(loadSyncConfig("/nonexistent/sync.json", env), (error: unknown) => {
    assert.ok(error instanceof TypeError);
    assert.match(error.message, /^Cannot load sync config "\/nonexistent\/sync.json": /);
    return true;
  });
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, "{ not json");
    await assert.rejects(loadSyncConfig(path, env), (error: unknown) => {
      assert.ok(error instanceof SyntaxError);
      assert.ok(error.message.startsWith(`Cannot parse sync config "${path}": `));
      return true;
    });
    await Deno.writeTextFile(path, '{ "tables": [], "tables": [] }');
    await assert.rejects(loadSyncConfig(path, env), {
      name: "SyntaxError",
      message: `Cannot parse sync config "${path}": key "tables" appears twice in one object ` +
        "(line 1); remove one",
    });
    // A Latin-1 `ä` (one byte, E4) on line 2: read leniently it became U+FFFD in a table name.
    await Deno.writeFile(
      path,
      Uint8Array.from('{\n"tables": ["st\xe4dte"] }', (c) => c.charCodeAt(0)),
    );
    await assert.rejects(loadSyncConfig(path, env), {
      name: "SyntaxError",
      message: `Cannot parse sync config "${path}": not UTF-8 text (line 2); save it as UTF-8`,
    });
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("sync.schema.json matches the zod schema (run `deno task sync:schema`)", async () => {
  const committed = await Deno.readTextFile(new URL("./sync.schema.json", import.meta.url));
  assert.equal(committed, syncConfigJsonSchema());
});

Deno.test("sync.example.json is a valid config", async () => {
  const parsed = await loadSyncConfig(
    new URL("./sync.example.json", import.meta.url).pathname,
    env,
  );
  assert.equal(parsed.owner, "us");
  assert.equal(parsed.tables.length, 2);
});

Deno.test("parseSyncConfig() expands every ${NAME} in a URL, not only the first", () => {
  const parsed = parseSyncConfig(
    config({
      databases: {
        us: "postgres://${DB_USER}:${DB_PASSWORD}@${DB_HOST}:5432/app",
        au: "${AU_DATABASE_URL}",
      },
    }),
    (name) => ({ ...ENV, DB_USER: "sync", DB_PASSWORD: "s3cret", DB_HOST: "us.example" })[name],
  );
  assert.equal(parsed.databases.us, "postgres://sync:s3cret@us.example:5432/app");
});

Deno.test("parseSyncConfig() accepts good URLs that the URL checks could mistake for bad ones", async (t) => {
  // A refused config stops every sync with exit 2.
  const databases = (au: string) => config({ databases: { us: "${US_DATABASE_URL}", au } });
  await t.step("a postgresql:// URL (libpq's other scheme, which npm:postgres reads)", () => {
    const parsed = parseSyncConfig(databases("postgresql://sync:pw@au.example/app"), env);
    assert.equal(parsed.databases.au, "postgresql://sync:pw@au.example/app");
  });
  await t.step("a variable that is set but empty expands to nothing, not to an error", () => {
    const parsed = parseSyncConfig(
      databases("postgres://sync@au.example/app${AU_QUERY}"),
      (name) => name === "AU_QUERY" ? "" : env(name),
    );
    assert.equal(parsed.databases.au, "postgres://sync@au.example/app");
  });
  await t.step("an @ in the query is no user: the host and database are read before it", () => {
    // npm:postgres reads this as host au.example, database app.
    const url = "postgres://sync:s3cret@au.example:5432/app?application_name=sync@au";
    assert.equal(parseSyncConfig(databases(url), env).databases.au, url);
  });
  await t.step("password= after the # is no query parameter: the URL is accepted", () => {
    const url = "postgres://sync:pw@au.example/app?sslmode=require#note&password=old";
    assert.equal(parseSyncConfig(databases(url), env).databases.au, url);
  });
});
