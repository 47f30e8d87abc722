/** @module Test fixtures for the sync: an owner and a destination on PGlite or on a real server. */
import postgres from "postgres";
import { startEmbeddedPostgres } from "../sync/embedded.ts";
import { parseSyncConfig, type SyncConfig } from "../sync/config.ts";
import { type Database, openDatabase } from "../sync/database.ts";
import { runAttempt, type TableReport } from "../sync/run_attempt.ts";

/** One side of a pair: its URL and an admin client for seeding and inspection. */
export interface Side {
  url: string;
  admin: postgres.Sql;
  /** Run several statements as one simple query. */
  exec(text: string): Promise<void>;
  /** First column of every row, as text. */
  column(text: string): Promise<(string | null)[]>;
}

/** An owner ("us") and a destination ("au") database, empty. */
export interface Pair {
  owner: Side;
  destination: Side;
  /** Open the production connections and a config for `tables`. */
  connect(tables: unknown[], extra?: Record<string, unknown>): {
    config: SyncConfig;
    databases: Map<string, Database>;
  };
  close(): Promise<void>;
}

/** Where a pair lives. */
export interface Backend {
  name: string;
  /** Why the backend is ignored, or undefined when it runs. */
  ignoreReason?: string;
  pair(): Promise<Pair>;
}

function side(url: string): Side {
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  return {
    url,
    admin,
    exec: async (text) => {
      await admin.unsafe(text).simple();
    },
    column: async (text) => {
      const rows = await admin.unsafe(text).values();
      return rows.map((row) => row[0] === null ? null : String(row[0]));
    },
  };
}

function makePair(ownerUrl: string, destinationUrl: string, cleanup: () => Promise<void>): Pair {
  const owner = side(ownerUrl);
  const destination = side(destinationUrl);
  const opened: Database[] = [];
  return {
    owner,
    destination,
    connect(tables, extra = {}) {
      const config = parseSyncConfig({
        owner: "us",
        databases: { us: ownerUrl, au: destinationUrl },
        tables,
        ...extra,
      });
      const databases = new Map([
        ["us", openDatabase("us", ownerUrl)],
        ["au", openDatabase("au", destinationUrl)],
      ]);
      opened.push(...databases.values());
      return { config, databases };
    },
    async close() {
      await Promise.all(opened.map((db) => db.close()));
      await owner.admin.end();
      await destination.admin.end();
      await cleanup();
    },
  };
}

const PG_URL = Deno.env.get("SYNC_TEST_PG_URL");

/** PGlite over pglite-socket always; a real PostgreSQL when CI sets `SYNC_TEST_PG_URL`. */
export const BACKENDS: Backend[] = [
  {
    name: "pglite",
    async pair() {
      const [us, au] = await Promise.all([startEmbeddedPostgres(), startEmbeddedPostgres()]);
      return makePair(us.url, au.url, async () => {
        await us.close();
        await au.close();
      });
    },
  },
  {
    name: "postgres",
    ignoreReason: PG_URL ? undefined : "SYNC_TEST_PG_URL is not set",
    async pair() {
      const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
      const stem = `sync_test_${crypto.randomUUID().slice(0, 8)}`;
      const names = [`${stem}_us`, `${stem}_au`];
      for (const name of names) await admin.unsafe(`CREATE DATABASE ${name}`);
      const urlOf = (name: string) => {
        const url = new URL(PG_URL!);
        url.pathname = `/${name}`;
        return url.toString();
      };
      return makePair(urlOf(names[0]), urlOf(names[1]), async () => {
        for (const name of names) await admin.unsafe(`DROP DATABASE ${name} WITH (FORCE)`);
        await admin.end();
      });
    },
  },
];

/**
 * The backend for tests of what PostgreSQL does not decide (the CLI, logs, refusals): the real
 * server where CI has one (a pair of databases in a fraction of a second), PGlite otherwise (two
 * servers, about 5 s a pair).
 */
export const QUICKEST_BACKEND: Backend =
  BACKENDS.find((b) => !b.ignoreReason && b.name === "postgres") ??
    BACKENDS[0];

/**
 * A digest of every row and column of `table` computed independently of the sync's own hash
 * (md5 of the rows' text in key order), to prove both sides hold the same values.
 */
export async function fingerprint(side: Side, table: string, orderBy: string): Promise<string> {
  const [digest] = await side.column(
    `SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY ${orderBy})), '')
     FROM ${table} AS t`,
  );
  return digest!;
}

/** Log sink for runAttempt that keeps the lines for assertions. */
export function collectLog(): { lines: string[]; log: (line: string) => void } {
  const lines: string[] = [];
  return { lines, log: (line) => lines.push(line) };
}

/** `url` reached as another login. */
export function asRole(url: string, role: string): string {
  const out = new URL(url);
  out.username = role;
  return out.toString();
}

/**
 * One attempt on `table` over the databases at `urls` (another login, another setting than the
 * pair's own), each closed after.
 */
export async function attemptAt(
  urls: { us: string; au: string },
  table: Record<string, unknown>,
): Promise<TableReport[]> {
  const config = parseSyncConfig({ owner: "us", databases: urls, tables: [table] });
  const databases = new Map([
    ["us", openDatabase("us", urls.us)],
    ["au", openDatabase("au", urls.au)],
  ]);
  try {
    return await runAttempt(config, databases, {
      dryRun: false,
      log: collectLog().log,
      retryDelayMs: 1,
    });
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
  }
}

/** One attempt on `tables` over the pair's own databases, each closed after. */
export async function attemptOn(
  pair: Pair,
  tables: unknown[],
  batchRows?: number,
): Promise<TableReport[]> {
  const { config, databases } = pair.connect(tables);
  try {
    return await runAttempt(config, databases, {
      dryRun: false,
      log: collectLog().log,
      retryDelayMs: 1,
      batchRows,
    });
  } finally {
    await Promise.all([...databases.values()].map((db) => db.close()));
  }
}
