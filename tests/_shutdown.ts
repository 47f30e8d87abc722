/**
 * @module Shared parts of the stop tests: vestibule's two entry points as a container would start
 * them, an upstream answer that never ends by itself, and the check that every answer a client got
 * has its access line.
 */
import assert from "node:assert/strict";
import { freePort, LOOPBACK_ONLY, oneRegion, untilHealthy } from "./_servers.ts";
import { keepTail } from "./_stderr_tail.ts";

/** The two ways vestibule runs self-hosted. */
export type Entry = "deno serve --parallel" | "deno run main.ts";
export const ENTRIES: readonly Entry[] = ["deno serve --parallel", "deno run main.ts"];

/** `deno serve --parallel` on `port`, on loopback, as a container would start it. */
export function serveArgs(port: number): string[] {
  return [
    "serve",
    "--parallel",
    "--allow-all",
    "--host",
    "127.0.0.1",
    `--port=${port}`,
    "serve.ts",
  ];
}

/** Deno 2.9.6 loses a signal that arrives while a serve worker is still starting (README). */
const SERVE_SETTLE_MS = 3000;

/** An entry point running against one upstream. */
export interface Running {
  /** `http://127.0.0.1:<port>` */
  base: string;
  child: Deno.ChildProcess;
  status: Promise<Deno.CommandStatus>;
  /** `exited with code N`, or `still running` after `ms`. */
  endWithin(ms: number): Promise<string>;
  /** Kills what is left of it (SIGKILL) and removes its rules file. */
  close(): Promise<void>;
}

/**
 * Starts `entry` with DENO_JOBS=2 on a free port, in front of `upstreamUrl`, and waits until it
 * answers (and, for `deno serve`, until its workers can take a signal).
 */
export async function startEntry(
  entry: Entry,
  upstreamUrl: string,
  options: { env?: Record<string, string>; stdout?: "piped" | "null" } = {},
): Promise<Running> {
  const dir = await Deno.makeTempDir({ prefix: "vestibule_stop_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(rules, JSON.stringify(oneRegion(upstreamUrl)));
  const port = freePort();
  const serve = entry === "deno serve --parallel";
  const child = new Deno.Command(Deno.execPath(), {
    args: serve ? serveArgs(port) : ["run", "--allow-all", "main.ts"],
    cwd: new URL("../", import.meta.url),
    env: {
      ...LOOPBACK_ONLY,
      VESTIBULE_RULES: rules,
      NO_COLOR: "1",
      DENO_JOBS: "2",
      PORT: String(port),
      ...options.env,
    },
    stdin: "null",
    stdout: options.stdout ?? "null",
    stderr: "piped",
  }).spawn();
  const stderr = keepTail(child.stderr);
  let ended = false;
  const status = child.status.then((s) => {
    ended = true;
    return s;
  });
  const running: Running = {
    base: `http://127.0.0.1:${port}`,
    child,
    status,
    async endWithin(ms) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        status.then((s) => `exited with code ${s.code}`),
        new Promise<string>((resolve) => timer = setTimeout(() => resolve("still running"), ms)),
      ]);
      clearTimeout(timer);
      return outcome;
    },
    async close() {
      if (!ended) child.kill("SIGKILL");
      await status;
      if (options.stdout === "piped") await child.stdout.cancel().catch(() => {});
      await stderr.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
  try {
    await untilHealthy(running.base, () => ended);
    if (serve) await new Promise((resolve) => setTimeout(resolve, SERVE_SETTLE_MS));
  } catch (error) {
    await running.close(); // which reads its stderr to the end
    throw new Error(`${(error as Error).message}; its stderr ends:\n${stderr.text}`);
  }
  return running;
}

/** Endless event streams for an upstream to answer with; `stopAll()` ends their timers. */
export function eventStreams(): { response(): Response; stopAll(): void } {
  const timers = new Set<ReturnType<typeof setInterval>>();
  return {
    response() {
      let timer: ReturnType<typeof setInterval>;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          timer = setInterval(() => {
            try {
              controller.enqueue(new TextEncoder().encode("data: x\n\n"));
            } catch {
              clearInterval(timer);
            }
          }, 100);
          timers.add(timer);
        },
        cancel: () => clearInterval(timer),
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
    stopAll() {
      for (const timer of timers) clearInterval(timer);
    },
  };
}

/**
 * `true` when the client got the whole "finished" answer; a request cut off by the exit, before or
 * during its body, is no answer the client got.
 */
export function gotAnswer(url: string): Promise<boolean> {
  return fetch(url, { headers: { connection: "close" } })
    .then(async (res) => res.status === 200 && await res.text() === "finished")
    .catch(() => false);
}

/** Every path in `answered` has a line among the JSON lines of `stdout`. */
export function assertEveryAnswerLogged(stdout: string, answered: ReadonlySet<string>): void {
  const logged = new Set(stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line).path));
  const missing = [...answered].filter((path) => !logged.has(path));
  assert.equal(
    `${missing.length} of ${answered.size} answered requests without an access line`,
    `0 of ${answered.size} answered requests without an access line`,
    `missing: ${missing.join(" ")}`,
  );
}
