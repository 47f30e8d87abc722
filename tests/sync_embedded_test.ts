/**
 * @module The embedded PGlite the demo and the sync tests run on: it has no authentication, so it
 * must be reachable on loopback only, and gone once closed.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { startEmbeddedPostgres } from "../sync/embedded.ts";

/** Whether a TCP connection to `hostname:port` is accepted (closed at once). */
async function accepts(hostname: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return false;
    throw error;
  }
}

Deno.test("an embedded database (no password) is served on 127.0.0.1 only, not on every interface", async () => {
  const embedded = await startEmbeddedPostgres();
  try {
    const url = new URL(embedded.url);
    assert.equal(url.hostname, "127.0.0.1");
    assert.equal(url.password, "");
    assert.equal(await accepts("127.0.0.1", Number(url.port)), true);
    // Another loopback address reaches a socket bound to every interface, not one bound to
    // 127.0.0.1; it stands in for the machine's network addresses without leaving the host.
    assert.equal(
      await accepts("127.0.0.2", Number(url.port)),
      false,
      "the unauthenticated database accepts connections beyond 127.0.0.1",
    );
  } finally {
    await embedded.close();
  }
});

Deno.test("an embedded database answers the production driver, and close() frees its port", async () => {
  const embedded = await startEmbeddedPostgres();
  const port = Number(new URL(embedded.url).port);
  let closed = false;
  try {
    const sql = postgres(embedded.url, { max: 1, onnotice: () => {} });
    try {
      const [{ answer }] = await sql`SELECT 6 * 7 AS answer`;
      assert.equal(answer, 42);
    } finally {
      await sql.end();
    }
    await embedded.close();
    closed = true;
    assert.equal(await accepts("127.0.0.1", port), false, "close() left the port listening");
  } finally {
    if (!closed) await embedded.close();
  }
});
