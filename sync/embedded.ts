/** @module An embedded PGlite served over the PostgreSQL wire protocol, for the demo and tests. */
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

/** A running embedded database and the URL that reaches it. */
export interface EmbeddedPostgres {
  /** `postgres://` URL on 127.0.0.1; no password, as PGlite has no authentication. */
  url: string;
  /** The PGlite instance, for direct seeding. */
  db: PGlite;
  /** Stop the socket server and close the database. */
  close(): Promise<void>;
}

/**
 * Start an in-memory PGlite and serve it on a free loopback port with pglite-socket, so clients
 * use the same npm:postgres code path as against a real server.
 */
export async function startEmbeddedPostgres(): Promise<EmbeddedPostgres> {
  const db = await PGlite.create();
  // Connections share PGlite's single session, queued at the query level, so a transaction on
  // one would see another's statements; the sync opens one per database. Connections past
  // maxConnections wait (up to 60 s), so tests close what they open.
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 16 });
  await server.start();
  const port = Number(server.getServerConn().split(":").at(-1));
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    db,
    close: async () => {
      await server.stop();
      await db.close();
    },
  };
}
