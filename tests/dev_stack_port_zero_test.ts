/** `deno task dev` with `PORT=0` (any free port): the links it prints must reach the stack. */
import assert from "node:assert/strict";

Deno.test("start-up: deno task dev with PORT=0 prints no localhost:0 links", async () => {
  const stack = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "dev/stack.ts"],
    cwd: new URL("../", import.meta.url),
    env: { PORT: "0", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let stdout = "";
  const decoder = new TextDecoder();
  const reader = stack.stdout.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), 20_000));
  try {
    // The banner ends with this line; a stack that refuses PORT=0 ends its output instead.
    while (!stdout.includes("Ctrl-C stops everything.")) {
      const read = await Promise.race([reader.read(), late]);
      if (read === "late" || read.done) break;
      stdout += decoder.decode(read.value, { stream: true });
    }
    const open = stdout.match(/^ {2}open +(\S+)/m)?.[1];
    assert.ok(
      !/localhost:0\//.test(stdout),
      `the banner sends the newcomer to ${open}, where nothing listens`,
    );
  } finally {
    clearTimeout(timer);
    try {
      stack.kill("SIGTERM");
    } catch {
      // Already gone (a stack that refused PORT=0).
    }
    await stack.status;
    await reader.cancel().catch(() => {});
  }
});
