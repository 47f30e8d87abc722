/**
 * A stop while nobody reads stdout (a stalled log shipper, a Docker log driver in blocking mode):
 * the README promises an exit within the grace period, plus at most 1 s for the access lines, so
 * well before an orchestrator's SIGKILL; the lines queued behind the stalled reader are given up.
 */
import assert from "node:assert/strict";
import { startUpstream } from "./_servers.ts";
import { ENTRIES, type Entry, eventStreams, type Running, startEntry } from "./_shutdown.ts";

/** Slack for process teardown on a busy 2-core machine. */
const SLACK_MS = 1500;
const DRAIN_AFTER_GRACE_MS = 1000;

// An event stream in flight holds each stop to its grace period. (Ad hoc, with nothing in flight
// too, the eight combinations stopped in 1.0–3.1 s, each within its grace + 1 s.)
for (const entry of ENTRIES) {
  for (const graceMs of [0, 2000]) {
    Deno.test(`${entry}: a stop with a stalled log reader, grace ${graceMs} ms and an event stream in flight exits 0 within grace + 1 s`, () =>
      stopWithStalledReader(entry, graceMs));
  }
}

async function stopWithStalledReader(entry: Entry, graceMs: number): Promise<void> {
  const streams = eventStreams();
  const up = startUpstream(
    (req) => new URL(req.url).pathname === "/events" ? streams.response() : new Response("ok"),
    { recordBody: false },
  );
  let server: Running | undefined;
  let events: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    server = await startEntry(entry, up.url, {
      env: { VESTIBULE_SHUTDOWN_GRACE_MS: String(graceMs) },
      stdout: "piped", // and never read: the pipe (64 KiB) fills, then every write waits
    });
    // About 2.3 KB a line: 200 lines are several times the pipe.
    const path = `/${"a".repeat(2000)}`;
    for (let i = 0; i < 200; i++) {
      const res = await fetch(`${server.base}${path}`, { headers: { connection: "close" } });
      await res.body?.cancel();
    }
    events = (await fetch(`${server.base}/events`)).body!.getReader();
    await events.read();
    const signalled = performance.now();
    server.child.kill("SIGTERM");
    const limit = graceMs + DRAIN_AFTER_GRACE_MS + SLACK_MS;
    const outcome = await server.endWithin(15_000);
    const tookMs = Math.round(performance.now() - signalled);
    assert.equal(
      `${outcome}${tookMs <= limit ? "" : ` after ${tookMs} ms`}`,
      "exited with code 0",
      `stop took ${tookMs} ms (limit ${limit})`,
    );
  } finally {
    await server?.close();
    await events?.cancel().catch(() => {});
    streams.stopAll();
    await up.close();
  }
}
