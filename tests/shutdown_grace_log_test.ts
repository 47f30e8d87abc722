/**
 * A stop whose grace period runs out (an answer that never ends, such as an event stream, is still
 * in flight) must still write the access lines of the answers that finished within it: the README
 * promises `deno run main.ts` and `deno serve --parallel` the same outcome for an answer in flight
 * and its access line.
 */
import assert from "node:assert/strict";
import { deadPort, oneRegion, startUpstream, untilHealthy } from "./_servers.ts";

const GRACE_MS = 1000;
/** Answers finishing this long before the grace runs out. */
const ANSWER_BEFORE_END_MS = 250;
/** About 120 lines of about 900 bytes: more than a pipe holds (64 KiB). */
const ANSWERS = 120;
/** The log reader catches up this long after the grace ran out (a shipper's busy moment). */
const READER_LATE_MS = 300;

const ENTRIES = {
  "deno run main.ts": (_port: number) => ({ args: ["run", "--allow-all", "main.ts"], settleMs: 0 }),
  // Deno 2.9.6 loses a signal that arrives while a worker is still starting (README).
  "deno serve --parallel": (port: number) => ({
    args: ["serve", "--parallel", "--allow-all", "--port", String(port), "serve.ts"],
    settleMs: 3000,
  }),
};

Deno.test("lost log lines: a stop whose grace period runs out writes the access lines of every answer the clients got", async (t) => {
  for (const [entry, command] of Object.entries(ENTRIES)) {
    await t.step(entry, () => answersBeforeTheGraceEnds(command));
  }
});

async function answersBeforeTheGraceEnds(
  command: (port: number) => { args: string[]; settleMs: number },
): Promise<void> {
  const arrived = Promise.withResolvers<void>();
  const signalled = Promise.withResolvers<number>();
  const streams = new Set<ReturnType<typeof setInterval>>();
  let waiting = 0;
  const up = startUpstream(async (req) => {
    if (new URL(req.url).pathname === "/events") {
      // An answer that never ends holds the stop until the grace period runs out.
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
    }
    if (++waiting === ANSWERS) arrived.resolve();
    const at = await signalled.promise;
    const wait = at + GRACE_MS - ANSWER_BEFORE_END_MS - performance.now();
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    return new Response("finished");
  });
  const dir = await Deno.makeTempDir({ prefix: "shutdown_grace_log_test_" });
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
      VESTIBULE_SHUTDOWN_GRACE_MS: String(GRACE_MS),
      DENO_JOBS: "2",
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped", // read only once the reader has caught up, below
    stderr: "null",
  }).spawn();
  const status = child.status;
  let events: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    const base = `http://127.0.0.1:${port}`;
    await untilHealthy(base);
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    events = (await fetch(`${base}/events`)).body!.getReader();
    await events.read();
    const path = (i: number) => `/answer-${i}-${"a".repeat(480)}`;
    const answers = Array.from(
      { length: ANSWERS },
      (_, i) =>
        fetch(`${base}${path(i)}`, { headers: { connection: "close" } })
          .then(async (res) => res.status === 200 && await res.text() === "finished")
          // Cut off by the exit, before or during the body: not an answer the client got.
          .catch(() => false),
    );
    await arrived.promise;
    child.kill("SIGTERM");
    signalled.resolve(performance.now());
    const answered = new Set<string>();
    (await Promise.all(answers)).forEach((ok, i) => ok && answered.add(path(i)));
    assert.ok(answered.size > 0, "some answers finished within the grace period");
    await new Promise((resolve) => setTimeout(resolve, ANSWER_BEFORE_END_MS + READER_LATE_MS));
    // The reader has caught up: everything vestibule wrote is read to its end.
    const guard = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const text = await new Response(child.stdout).text();
    const { code } = await status.finally(() => clearTimeout(guard));
    assert.equal(code, 0);
    const logged = new Set(text.split("\n").filter(Boolean).map((line) => JSON.parse(line).path));
    const missing = [...answered].filter((p) => !logged.has(p));
    assert.equal(
      `${missing.length} of ${answered.size} answered requests without an access line`,
      `0 of ${answered.size} answered requests without an access line`,
    );
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await status;
    await child.stdout.cancel().catch(() => {});
    await events?.cancel().catch(() => {});
    for (const timer of streams) clearInterval(timer);
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
}
