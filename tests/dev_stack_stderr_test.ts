/**
 * `deno task dev` prints its banner once vestibule's stderr says "Listening on" (397ced5): a
 * vestibule that writes more than a few KB to stderr before it listens must still get a banner.
 */
import assert from "node:assert/strict";
import { startDevStack } from "./_dev_stack.ts";

Deno.test("deno task dev: a vestibule that writes 4 KB or more to stderr before it listens still gets its banner", async () => {
  // DENO_LOG=debug (a developer chasing a module resolution problem) makes Deno itself write
  // about 190 KB of debug lines to vestibule's stderr before Deno.serve's "Listening on".
  const stack = await startDevStack({ PORT: "0", DENO_LOG: "debug" }, 30_000);
  const port = Number(/^ {2}open +http:\/\/localhost:(\d+)\//m.exec(stack.stdout)?.[1]);
  let listened = false;
  try {
    assert.ok(port > 0, `no banner was printed; stderr ends: ${stack.stderr.slice(-1_000)}`);
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      listened = true;
    } catch {
      // not listening: reported below
    }
  } finally {
    await stack.stop();
  }
  assert.ok(listened, `vestibule listens on ${port}, the banner's port`);
});
