/**
 * A stop whose grace period runs out (an answer that never ends, such as an event stream, is still
 * in flight) must still write the access lines of the answers that finished within it, and of
 * those that finished in the second the stop then gives the lines: the README promises
 * `deno run main.ts` and `deno serve --parallel` the same outcome for an answer in flight and its
 * access line.
 */
import assert from "node:assert/strict";
import { startUpstream } from "./_servers.ts";
import {
  assertEveryAnswerLogged,
  ENTRIES,
  eventStreams,
  gotAnswer,
  type Running,
  startEntry,
} from "./_shutdown.ts";

const GRACE_MS = 1000;
/** main.ts and serve.ts: how long a stop waits for the log after the grace period ran out. */
const DRAIN_AFTER_GRACE_MS = 1000;
/** The log reader catches up this long after the answers (a shipper's busy moment). */
const READER_LATE_MS = 300;

Deno.test("lost log lines: a stop whose grace period runs out writes the access lines of every answer the clients got", async (t) => {
  for (const entry of ENTRIES) {
    // About 120 lines of about 900 bytes, more than a pipe holds (64 KiB), finishing 250 ms
    // before the grace period runs out, read only once the reader has caught up.
    await t.step(entry, async () => {
      const answered = await answersLogged(entry, {
        answers: 120,
        path: (i) => `/answer-${i}-${"a".repeat(480)}`,
        finishAfterMs: (_i) => GRACE_MS - 250,
        readerLateMs: 250 + READER_LATE_MS,
      });
      assert.ok(answered > 0, "some answers finished before the exit");
    });
  }
});

Deno.test("lost log lines: deno serve --parallel writes the access line of every answer a client got in the second after the grace period", async () => {
  // Another worker's exit ends this one without warning; 240 answers finish over the last 30 ms
  // of that second, read all along by a reader that keeps up.
  // On a loaded machine the whole window can fall after the exit, and then the run proves
  // nothing: it is run again (each run checks every answer it got), at most three times.
  const spreadMs = 30;
  let answered = 0;
  for (let run = 0; run < 3 && answered === 0; run++) {
    answered = await answersLogged("deno serve --parallel", {
      answers: 240,
      path: (i) => `/answer-${i}`,
      finishAfterMs: (i) => GRACE_MS + DRAIN_AFTER_GRACE_MS - spreadMs + (i % spreadMs),
    });
  }
  assert.ok(answered > 0, "some answers finished before the exit, in one of three runs");
});

/**
 * Sends `answers` requests that the upstream holds until SIGTERM plus `finishAfterMs(i)`, with an
 * event stream in flight that holds the stop to its grace period; then checks every answer the
 * client got against the access lines on stdout (read from the start, or only `readerLateMs`
 * after the signal and the answers). Returns how many answers the client got.
 */
async function answersLogged(
  entry: (typeof ENTRIES)[number],
  options: {
    answers: number;
    path: (i: number) => string;
    finishAfterMs: (i: number) => number;
    readerLateMs?: number;
  },
): Promise<number> {
  const arrived = Promise.withResolvers<void>();
  const signalled = Promise.withResolvers<number>();
  const streams = eventStreams();
  const index = new Map(Array.from({ length: options.answers }, (_, i) => [options.path(i), i]));
  let waiting = 0;
  const up = startUpstream(async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/events") return streams.response();
    if (++waiting === options.answers) arrived.resolve();
    const at = await signalled.promise;
    const wait = at + options.finishAfterMs(index.get(path)!) - performance.now();
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    return new Response("finished");
  }, { recordBody: false });
  let server: Running | undefined;
  let events: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    server = await startEntry(entry, up.url, {
      env: { VESTIBULE_SHUTDOWN_GRACE_MS: String(GRACE_MS) },
      stdout: "piped",
    });
    const { base, child } = server;
    const read = () => new Response(child.stdout).text();
    const early = options.readerLateMs === undefined ? read() : undefined;
    events = (await fetch(`${base}/events`)).body!.getReader();
    await events.read();
    const answers = [...index.keys()].map((path) => gotAnswer(`${base}${path}`));
    await arrived.promise;
    child.kill("SIGTERM");
    signalled.resolve(performance.now());
    const answered = new Set<string>();
    const got = await Promise.all(answers);
    [...index.keys()].forEach((path, i) => got[i] && answered.add(path));
    if (options.readerLateMs !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, options.readerLateMs));
    }
    const guard = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const text = await (early ?? read());
    const exit = await server.endWithin(10_000);
    clearTimeout(guard);
    assertEveryAnswerLogged(text, answered);
    assert.equal(exit, "exited with code 0");
    return answered.size;
  } finally {
    await server?.close();
    await events?.cancel().catch(() => {});
    streams.stopAll();
    await up.close();
  }
}
