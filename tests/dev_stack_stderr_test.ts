/**
 * `deno task dev` prints its banner once vestibule's stderr says "Listening on" (397ced5): a
 * vestibule that writes more than a few KB to stderr before it listens must still get a banner.
 */
import assert from "node:assert/strict";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test("deno task dev: a vestibule that writes 4 KB or more to stderr before it listens still gets its banner", async () => {
  const port = freePort();
  const stack = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "dev/stack.ts"],
    cwd: new URL("../", import.meta.url),
    // DENO_LOG=debug (a developer chasing a module resolution problem) makes Deno itself write
    // about 190 KB of debug lines to vestibule's stderr before Deno.serve's "Listening on".
    env: { PORT: String(port), NO_COLOR: "1", DENO_LOG: "debug" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let stdout = "";
  const decoder = new TextDecoder();
  const reader = stack.stdout.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), 30_000));
  let listened = false;
  try {
    while (!stdout.includes("Ctrl-C stops everything.")) {
      const read = await Promise.race([reader.read(), late]);
      if (read === "late" || read.done) break;
      stdout += decoder.decode(read.value, { stream: true });
    }
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      listened = true;
    } catch {
      // not listening: reported below
    }
  } finally {
    clearTimeout(timer);
    stack.kill("SIGTERM");
    await stack.status;
    await reader.cancel().catch(() => {});
  }
  assert.ok(listened, "vestibule listens");
  assert.match(stdout, new RegExp(`open +http://localhost:${port}/`), "no banner was printed");
});
