/**
 * `deno task dev` with `PORT=0` (any free port): the links it prints must reach the stack, and a
 * stop right after the banner leaves no vestibule behind.
 */
import assert from "node:assert/strict";
import { startDevStack } from "./_dev_stack.ts";

/** Whether something accepts connections on 127.0.0.1:`port`, within about `ms`. */
async function listening(port: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  do {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } while (Date.now() < deadline);
  return false;
}

// SIGTERM from a supervisor; SIGINT from `kill -INT` or a process manager, which signals the stack
// alone (Ctrl-C in a terminal signals vestibule too).
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`start-up: deno task dev with PORT=0 prints no localhost:0 links, and a ${signal} leaves no orphan`, async () => {
    const stack = await startDevStack({ PORT: "0" });
    const { stdout } = stack;
    // What vestibule said when there is no banner (a port it could not take, a crash).
    const output = `stdout:\n${stdout}\nstderr:\n${stack.stderr}`;
    try {
      const open = stdout.match(/^ {2}open +(\S+)/m)?.[1];
      assert.ok(
        !/localhost:0\//.test(stdout),
        `the banner sends the newcomer to ${open}, where nothing listens`,
      );
    } finally {
      await stack.stop(signal);
    }
    // Stopped right after its banner, the stack used to exit before its signal listener was up and
    // leave vestibule running on the port, orphaned, for good.
    const port = Number(stdout.match(/localhost:(\d+)\//)?.[1]);
    assert.ok(port > 0, output);
    assert.equal(await listening(port, 3_000), false, `vestibule still listens on ${port}`);
  });
}
