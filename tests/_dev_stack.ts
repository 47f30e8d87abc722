/** @module Test helper: `deno task dev` as a newcomer runs it, read up to the end of its banner. */
import { killGroup, spawnInGroup } from "./_process_group.ts";
import { keepTail } from "./_stderr_tail.ts";

/** A running dev stack and what it printed up to its banner (or until it ended or timed out). */
export interface DevStack {
  stdout: string;
  /** The last few KB the stack wrote to stderr so far (vestibule's lines among them): why it failed. */
  readonly stderr: string;
  /**
   * Sends `signal` (if the stack still runs) and waits for it to exit; throws if it left one of
   * its processes (an origin, vestibule) running, as Ctrl-C in a terminal would.
   */
  stop(signal?: Deno.Signal): Promise<void>;
}

/** How long a stack may take to stop after its signal: past vestibule's 25 s grace period. */
const STOP_MS = 30_000;

/** Starts `dev/stack.ts` with `env` and reads its stdout until the banner's last line, or `ms`. */
export async function startDevStack(env: Record<string, string>, ms = 20_000): Promise<DevStack> {
  const stack = spawnInGroup(Deno.execPath(), {
    args: ["run", "--allow-all", "dev/stack.ts"],
    cwd: new URL("../", import.meta.url),
    // The stack keeps vestibule on loopback itself (VESTIBULE_HOST 127.0.0.1 unless set).
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const stderr = keepTail(stack.stderr);
  const decoder = new TextDecoder();
  const reader = stack.stdout.getReader();
  let stdout = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
  try {
    // The banner ends with this line; a stack that cannot start ends its output instead.
    while (!stdout.includes("Ctrl-C stops everything.")) {
      const read = await Promise.race([reader.read(), late]);
      if (read === "late" || read.done) break;
      stdout += decoder.decode(read.value, { stream: true });
    }
  } finally {
    clearTimeout(timer);
  }
  return {
    stdout,
    get stderr() {
      return stderr.text;
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        stack.kill(signal);
      } catch {
        // Already gone (a stack that could not start).
      }
      // Bounded: a stack that ignores the signal fails the test instead of hanging the suite.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exited = await Promise.race([
        stack.status.then(() => true),
        new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), STOP_MS)),
      ]);
      clearTimeout(timer);
      if (!exited) killGroup(stack.pid);
      await stack.status;
      const leftOver = killGroup(stack.pid);
      await reader.cancel().catch(() => {});
      await stderr.close();
      if (!exited) throw new Error(`the dev stack did not exit within ${STOP_MS} ms of ${signal}`);
      if (leftOver) throw new Error(`the dev stack ended on ${signal} and left a process running`);
    },
  };
}
