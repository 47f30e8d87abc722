/** @module Test helpers: vestibule as real child processes sharing one KV file. */
import { answersHealth, freePort, LOOPBACK_ONLY } from "./_servers.ts";
import { OCAP_KEY } from "./_ocap.ts";
import { killGroup, spawnInGroup } from "./_process_group.ts";

const ROOT = new URL("../", import.meta.url);
const RULES = new URL("fixtures/ocap/rules.json", import.meta.url);

/**
 * The same rules with a 10 s provider timeout: for a fan-in, whose provider answers from the
 * test process that drives 100 callers, which a loaded CI machine delayed past the 1 s timeout
 * (a 504, then a second origin call by design).
 */
export const PATIENT_RULES = new URL("fixtures/ocap/rules_10s.json", import.meta.url);

/** A running vestibule process. */
export interface VestibuleProcess {
  url: string;
  /**
   * Sends `signal` and waits for the process to end; throws if it left a process of its own
   * running (which it then kills).
   */
  stop(signal?: Deno.Signal): Promise<void>;
}

/**
 * Starts `deno task serve` (`deno serve --parallel`, `DENO_JOBS` workers) or `deno run main.ts`
 * on a free port, with the OCAP fixture rules pointing at `providerUrl`, and waits until it answers.
 */
export async function startProcess(
  kind: "serve" | "run",
  options: {
    providerUrl: string;
    kvPath: string;
    jobs?: number;
    env?: Record<string, string>;
    /** The rules file; default the OCAP fixture with a 1 s provider timeout. */
    rules?: URL;
    /** Drop the child's stderr (a store it cannot reach makes Deno report every retry there). */
    quiet?: boolean;
  },
): Promise<VestibuleProcess> {
  const port = freePort();
  const args = kind === "serve" ? ["task", "serve"] : ["run", "--allow-all", "main.ts"];
  const child = spawnInGroup(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: {
      ...LOOPBACK_ONLY,
      PORT: String(port),
      DENO_JOBS: String(options.jobs ?? 4),
      OCAP_KEY,
      PROVIDER_ORIGIN: options.providerUrl,
      VESTIBULE_RULES: (options.rules ?? RULES).pathname,
      VESTIBULE_KV: options.kvPath,
      NO_COLOR: "1",
      ...options.env,
    },
    stdin: "null",
    stdout: "null",
    stderr: options.quiet ? "null" : "inherit",
  });
  let ended = false;
  const status = child.status.then((s) => {
    ended = true;
    return s;
  });
  const process: VestibuleProcess = {
    url: `http://127.0.0.1:${port}`,
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (!ended) {
        try {
          child.kill(signal);
        } catch {
          // Already gone.
        }
      }
      await status;
      if (killGroup(child.pid)) {
        throw new Error(`"deno ${args.join(" ")}" ended on ${signal} and left a process running`);
      }
    },
  };
  const deadline = performance.now() + 20_000;
  while (true) {
    try {
      if (await answersHealth(process.url)) return process;
    } catch {
      // Not listening yet.
    }
    if (ended || performance.now() > deadline) {
      // The whole group: a SIGKILL to `deno task` reaches none of its children.
      killGroup(child.pid);
      await status;
      killGroup(child.pid);
      throw new Error(`Cannot start vestibule with "deno ${args.join(" ")}" on port ${port}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
