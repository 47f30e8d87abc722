/** @module Connections to one region's PostgreSQL through npm:postgres, with byte counting. */
import net from "node:net";
import postgres from "postgres";
import { redactUrl } from "./redact.ts";

/** An open connection to one region's database. */
export interface Database {
  /** Region name from the config. */
  readonly region: string;
  /** The URL with its password redacted, for logs. */
  readonly label: string;
  /** The npm:postgres client, limited to one connection. */
  readonly sql: postgres.Sql;
  /** Bytes received from the server since the connection opened. */
  bytesRead(): number;
  /** Bytes sent to the server since the connection opened. */
  bytesSent(): number;
  /** Replace this database's URL and password in `text`, for messages that may quote them. */
  scrub(text: string): string;
  /** Close the connection, letting a query under way finish (up to 5 s). */
  close(): Promise<void>;
  /** Close the connection now, failing a query under way (a connect try a stop cuts short). */
  abandon(): Promise<void>;
}

/**
 * Settings that change how values print as text; pinned so checksums agree across servers.
 * `extra_float_digits = 3` prints floats exactly (shortest round-trip form on PG >= 12).
 */
export const PINNED_SETTINGS: Readonly<Record<string, string>> = {
  TimeZone: "UTC",
  DateStyle: "ISO, YMD",
  IntervalStyle: "postgres",
  extra_float_digits: "3",
  bytea_output: "hex",
};

/** Replace `url` and its password (raw or percent-encoded) in `text`. */
export function scrubSecrets(text: string, url: string): string {
  let out = text.replaceAll(url, redactUrl(url));
  try {
    const password = new URL(url).password;
    // Very short passwords would match ordinary text; such a password is not worth hiding.
    if (password.length >= 4) {
      out = out.replaceAll(password, "***").replaceAll(decodeURIComponent(password), "***");
    }
  } catch {
    // An unparseable URL was replaced whole above.
  }
  return out;
}

/**
 * Planner settings for the sync's own transactions: JIT compiles the diff's many small LATERAL
 * scans for longer than they run (their row estimates are guesses), and bucket sums sort in
 * memory instead of spilling to disk.
 */
export const TUNED_SETTINGS: Readonly<Record<string, string>> = {
  jit: "off",
  work_mem: "64MB",
  // A policy that hides rows from the sync login would make hidden owner rows look deleted (and
  // delete them at the destination) and hidden destination rows look missing. Off, a query a
  // policy would filter fails instead, naming the table, as pg_dump does.
  // https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-ROW-SECURITY
  row_security: "off",
  // Each side's transaction idles while the other works (the owner's while the destination
  // writes, the destination's while the owner is read): a server's idle timeout would end it
  // half-way, and the driver then throws from a timer, killing the process.
  idle_in_transaction_session_timeout: "0",
};

/**
 * Open one connection to `url`. One connection because every unit of work is one transaction,
 * and PGlite serves a single session.
 */
export function openDatabase(region: string, url: string): Database {
  let received = 0;
  let sent = 0;
  const sql = postgres(url, {
    max: 1,
    onnotice: () => {},
    connect_timeout: 10,
    // No array parsing: the driver learns array types with a query of its own at connect, and a
    // transaction's first answers could be parsed before that query's answer was applied (CI saw
    // an enum's labels arrive as the string "{low,high}"). Queries return lists as json instead.
    fetch_types: false,
    // Pinned per transaction (`PIN_SESSION_SQL`), not for the session: the destination's own
    // TimeZone is read at the start of its transaction and used for its writes.
    connection: { application_name: "vestibule-sync" },
    // A socket of our own so the bench and logs can report real wire bytes.
    // @ts-expect-error: `socket` is supported by the driver (src/connection.js) but not typed
    socket: ({ host, port }: { host: string[]; port: number[] }) => {
      // Returned before it connects: the driver's own error and close handlers then see a
      // refused connection (a socket that fails before being returned leaves queries hanging),
      // and writes are buffered until the connection is up.
      const socket = net.connect(port[0], host[0]);
      // The driver sets these on sockets it makes, and names them in a connection error
      // (`write CONNECT_TIMEOUT host:port`, not `undefined:undefined`) and as the TLS server name.
      Object.assign(socket, { host: host[0], port: port[0] });
      socket.on("data", (chunk: Uint8Array) => {
        received += chunk.byteLength;
      });
      const write = socket.write.bind(socket);
      socket.write = ((chunk: Uint8Array | string, ...rest: unknown[]) => {
        sent += typeof chunk === "string"
          ? new TextEncoder().encode(chunk).byteLength
          : chunk.byteLength;
        // deno-lint-ignore no-explicit-any
        return (write as any)(chunk, ...rest);
      }) as typeof socket.write;
      return socket;
    },
  });
  return {
    region,
    label: redactUrl(url),
    sql,
    bytesRead: () => received,
    bytesSent: () => sent,
    scrub: (text) => scrubSecrets(text, url),
    close: () => sql.end({ timeout: 5 }),
    abandon: () => sql.end({ timeout: 0 }),
  };
}
