/**
 * `deno serve --parallel` (the self-hosted `deno task serve`) stopped while an answer that does not
 * end by itself (server-sent events, a long download) is in flight: like `deno run main.ts`, it must
 * exit within an orchestrator's grace period (Kubernetes: 30 s; vestibule gives up after 25 s, or
 * `VESTIBULE_SHUTDOWN_GRACE_MS`), not run on until SIGKILL, and a second signal ends it at once.
 */
import assert from "node:assert/strict";
import { startUpstream } from "./_servers.ts";
import { ENTRIES, type Entry, eventStreams, type Running, startEntry } from "./_shutdown.ts";

/** `entry` with an event stream in flight, read all along by its client. */
async function withStreamInFlight(
  fn: (server: Running) => Promise<void>,
  entry: Entry = "deno serve --parallel",
  env: Record<string, string> = {},
): Promise<void> {
  const arrived = Promise.withResolvers<void>();
  const streams = eventStreams();
  const up = startUpstream(() => {
    arrived.resolve();
    return streams.response();
  });
  let server: Running | undefined;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let reading: Promise<void> | undefined;
  try {
    server = await startEntry(entry, up.url, { env });
    const events = await fetch(`${server.base}/events`);
    assert.equal(events.status, 200);
    const streamReader = events.body!.getReader();
    reader = streamReader;
    await streamReader.read();
    await arrived.promise;
    reading = (async () => {
      try {
        while (!(await streamReader.read()).done) { /* the stream runs on */ }
      } catch { /* cut off at exit */ }
    })();
    await fn(server);
  } finally {
    await server?.close();
    await reader?.cancel().catch(() => {});
    await reading;
    streams.stopAll();
    await up.close();
  }
}

/** A grace period short enough to wait out in a test; the 25 s default is lib/shutdown_grace_test.ts's. */
const SHORT_GRACE = { VESTIBULE_SHUTDOWN_GRACE_MS: "3000" };

for (const entry of ENTRIES) {
  Deno.test(`${entry}: a SIGTERM while an event stream is in flight waits out the grace period, then exits 0, not at SIGKILL`, () =>
    withStreamInFlight(
      async (server) => {
        server.child.kill("SIGTERM");
        assert.equal(
          await server.endWithin(1_500),
          "still running",
          "the answer in flight is waited for",
        );
        // Well before an orchestrator's SIGKILL (Kubernetes' default grace is 30 s).
        assert.equal(await server.endWithin(10_000), "exited with code 0");
      },
      entry,
      SHORT_GRACE,
    ));
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`deno serve --parallel: a second ${signal} with an event stream in flight exits at once`, () =>
    withStreamInFlight(async (serve) => {
      serve.child.kill(signal);
      await new Promise((resolve) => setTimeout(resolve, 500));
      serve.child.kill(signal); // the operator insists
      assert.equal(await serve.endWithin(5_000), "exited with code 0");
    }));
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`deno run main.ts: a second ${signal} with an event stream in flight exits at once, not after the grace period`, () =>
    withStreamInFlight(async (server) => {
      server.child.kill(signal);
      assert.equal(
        await server.endWithin(500),
        "still running",
        "the answer in flight is waited for",
      );
      server.child.kill(signal); // the operator insists
      // The default grace period is 25 s.
      assert.equal(await server.endWithin(5_000), "exited with code 0");
    }, "deno run main.ts"));
}
