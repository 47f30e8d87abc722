/**
 * `deno task dev` prints its banner once vestibule's stderr says "Listening on" (397ced5): a
 * vestibule that writes more than a few KB to stderr before it listens must still get a banner.
 */
import assert from "node:assert/strict";
import { startDevStack } from "./_dev_stack.ts";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test("deno task dev: a vestibule that writes 4 KB or more to stderr before it listens still gets its banner", async () => {
  const port = freePort();
  // DENO_LOG=debug (a developer chasing a module resolution problem) makes Deno itself write
  // about 190 KB of debug lines to vestibule's stderr before Deno.serve's "Listening on".
  const stack = await startDevStack({ PORT: String(port), DENO_LOG: "debug" }, 30_000);
  let listened = false;
  try {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      listened = true;
    } catch {
      // not listening: reported below
    }
  } finally {
    await stack.stop();
  }
  assert.ok(listened, "vestibule listens");
  assert.match(
    stack.stdout,
    new RegExp(`open +http://localhost:${port}/`),
    "no banner was printed",
  );
});
