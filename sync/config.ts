/** @module Sync config: the zod schema, `${NAME}` env expansion and cross-field checks. */
import { decodeConfigFile, parseConfigJson } from "../lib/config_json.ts";
import { z } from "zod";

/** A table name written as `schema.table`; an unqualified name means `public`. */
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/;

const TableSchema = z.strictObject({
  name: z.string().regex(TABLE_NAME, 'Expected a table name like "public.subject"'),
  primary_key: z.array(z.string().min(1)).min(1).describe(
    "Primary key columns in order; must equal the table's primary key on every database",
  ),
  columns: z.array(z.string().min(1)).min(1).optional().describe(
    "Columns to sync; default: every non-generated column of the owner's table",
  ),
  exclude_columns: z.array(z.string().min(1)).default([]).describe(
    "Columns neither compared nor written (for example a local updated_at)",
  ),
  delete_missing: z.boolean().default(false).describe(
    "Delete destination rows whose key is absent at the owner; otherwise they are only reported",
  ),
  max_delete_ratio: z.number().min(0).max(1).optional().describe(
    "Refuse the table's sync when deletes exceed this share of the destination's rows",
  ),
});

/** The sync config file's schema; also the source of `sync.schema.json`. */
export const SyncConfigSchema = z.strictObject({
  $schema: z.string().optional(),
  owner: z.string().min(1).describe("Region whose database is the source of truth"),
  databases: z.record(z.string().min(1), z.string().min(1)).describe(
    "Region name to postgres:// URL; `${NAME}` is replaced by the environment variable NAME",
  ),
  interval_seconds: z.number().min(0).default(60).describe(
    "Delay after each attempt in loop mode",
  ),
  max_delete_ratio: z.number().min(0).max(1).default(0.1).describe(
    "Default for tables that set none",
  ),
  tables: z.array(TableSchema).min(1),
});

/** One table as configured, with defaults filled in. */
export type TableConfig = z.infer<typeof TableSchema> & { max_delete_ratio: number };

/** A validated config: URLs expanded, every table's delete ratio resolved. */
export type SyncConfig = Omit<z.infer<typeof SyncConfigSchema>, "tables"> & {
  tables: TableConfig[];
};

/** Replace every `${NAME}` in `value`; a variable that is not set is an error naming it. */
function expandEnv(value: string, env: (name: string) => string | undefined, where: string) {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const found = env(name);
    if (found === undefined) {
      throw new TypeError(
        `Cannot load sync config: environment variable "${name}" is not set (used in ${where})`,
      );
    }
    return found;
  });
}

/**
 * Validate a parsed config file: schema, env references, owner and key consistency.
 *
 * @throws {TypeError} naming the field at fault
 */
export function parseSyncConfig(
  input: unknown,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): SyncConfig {
  const parsed = SyncConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new TypeError(
      `Cannot load sync config: ${namingTables(z.prettifyError(parsed.error), input)}`,
    );
  }
  const raw = parsed.data;
  const databases: Record<string, string> = {};
  for (const [region, url] of Object.entries(raw.databases)) {
    const expanded = expandEnv(url, env, `databases.${region}`);
    if (!/^postgres(ql)?:\/\//.test(expanded)) {
      throw new TypeError(
        `Cannot load sync config: databases.${region} is not a postgres:// URL`,
      );
    }
    // npm:postgres fills a part the URL leaves out from PGHOST (else localhost) and PGDATABASE
    // (else the user's name): an empty `${AU_HOST}` synced into whatever server a shell's PG*
    // variables named. The parts are read as the driver reads them: the authority runs to the
    // first `/` or `?` (a `#` in a password aside), the host after its `@`, the database after.
    const rest = expanded.replace(/^postgres(ql)?:\/\//, "");
    const authority = rest.split(/[/?]/, 1)[0];
    const host = authority.slice(authority.lastIndexOf("@") + 1);
    const database = rest.slice(authority.length).match(/^\/([^?#]*)/)?.[1];
    // Several hosts (a primary and a standby) are refused: with the socket of our own the driver
    // dials the first every time, and one that refuses made it reconnect forever, deaf to a stop
    // (its own sockets retry forever once all are down, too). It finds the list after the first
    // `@`, decoded: `p@ss,word@db` and `db1%2Cdb2` are two hosts each.
    const hosts = authority.slice(authority.indexOf("@") + 1);
    if (/,|%2c/i.test(hosts)) {
      throw new TypeError(
        `Cannot load sync config: databases.${region} lists several hosts: name the one to sync ` +
          "with (a destination's primary, which takes the writes; percent-encode @ and , in a " +
          "password)",
      );
    }
    // npm:postgres splits the host at `:`, so `[::1]:5432` is the host `[`: it cannot dial an IPv6
    // literal at all, and failed at every attempt with `getaddrinfo ENOTFOUND [`.
    if (host.startsWith("[")) {
      throw new TypeError(
        `Cannot load sync config: databases.${region} names an IPv6 address, which npm:postgres ` +
          "cannot connect to: use a host name for it",
      );
    }
    const missing = host === "" ? "host" : database ? undefined : "database";
    if (missing) {
      const fallback = missing === "host" ? "PGHOST, else localhost" : "PGDATABASE, else the user";
      const read = url.includes("${") ? " once its ${…} references are read" : "";
      throw new TypeError(
        `Cannot load sync config: databases.${region} names no ${missing}${read} (npm:postgres ` +
          `would use ${fallback}): write it in the URL`,
      );
    }
    if (!decodesCleanly(expanded)) {
      // npm:postgres decodes the user and password with decodeURIComponent and would throw a
      // bare URIError at connect time; the message never includes the URL (it holds a secret).
      throw new TypeError(
        `Cannot load sync config: databases.${region} has a malformed %-escape in its user or ` +
          "password (write % as %25)",
      );
    }
    // The query as npm:postgres reads it, split by hand as the driver does.
    const query = expanded.split("#")[0].split("?").slice(1).join("?");
    if (new URLSearchParams(query).has("password")) {
      // libpq reads it; npm:postgres sends an unknown parameter to the server as a setting, so
      // the login fails and the password travels as a startup parameter.
      throw new TypeError(
        `Cannot load sync config: databases.${region} has its password as ?password=, which ` +
          "npm:postgres does not read: write it in the URL (postgres://user:PASSWORD@host/db)",
      );
    }
    databases[region] = expanded;
  }
  if (!(raw.owner in databases)) {
    throw new TypeError(
      `Cannot load sync config: owner "${raw.owner}" is not in databases (${
        Object.keys(databases).map((r) => `"${r}"`).join(", ")
      })`,
    );
  }
  if (Object.keys(databases).length < 2) {
    throw new TypeError("Cannot load sync config: databases needs the owner and one destination");
  }
  const seen = new Set<string>();
  const tables = raw.tables.map((table) => {
    const name = table.name.includes(".") ? table.name : `public.${table.name}`;
    if (seen.has(name)) {
      throw new TypeError(`Cannot load sync config: table "${name}" is listed twice`);
    }
    seen.add(name);
    for (const field of ["primary_key", "columns", "exclude_columns"] as const) {
      const list = table[field] ?? [];
      const twice = list.find((column, i) => list.indexOf(column) !== i);
      if (twice !== undefined) {
        throw new TypeError(
          `Cannot load sync config: table "${name}" ${field} lists column "${twice}" twice`,
        );
      }
    }
    for (const column of table.exclude_columns) {
      if (table.primary_key.includes(column)) {
        throw new TypeError(
          `Cannot load sync config: table "${name}" excludes primary key column "${column}"`,
        );
      }
    }
    if (table.columns) {
      for (const column of table.primary_key) {
        if (!table.columns.includes(column)) {
          throw new TypeError(
            `Cannot load sync config: table "${name}" columns lack primary key column "${column}"`,
          );
        }
      }
    }
    return { ...table, name, max_delete_ratio: table.max_delete_ratio ?? raw.max_delete_ratio };
  });
  return { ...raw, databases, tables };
}

/** Read and validate a config file. */
export async function loadSyncConfig(
  path: string,
  env?: (name: string) => string | undefined,
): Promise<SyncConfig> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new TypeError(`Cannot load sync config "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  const source = `sync config "${path}"`;
  return parseSyncConfig(parseConfigJson(decodeConfigFile(bytes, source), source), env);
}

/** Whether the URL's user and password survive `decodeURIComponent`, as npm:postgres needs. */
function decodesCleanly(url: string): boolean {
  const userinfo = /^postgres(?:ql)?:\/\/([^@/?#]*)@/.exec(url)?.[1] ?? "";
  try {
    decodeURIComponent(userinfo);
    return true;
  } catch {
    return false;
  }
}

/**
 * `→ at tables[1].primary_key` as `→ at tables[1] (table "public.x").primary_key`: in a long
 * config the index alone leaves the reader counting. Not where the name itself is at fault.
 */
function namingTables(message: string, input: unknown): string {
  const tables = (input as { tables?: unknown } | null)?.tables;
  if (!Array.isArray(tables)) return message;
  return message.replace(/(→ at tables\[(\d+)\])(?!\.name\b)/g, (at, _, index) => {
    const name = (tables[Number(index)] as { name?: unknown } | null)?.name;
    return typeof name === "string" ? `${at} (table ${JSON.stringify(name)})` : at;
  });
}
