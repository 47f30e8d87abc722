/**
 * `deno serve --parallel` (the self-hosted `deno task serve`) stopped while an answer that does not
 * end by itself (server-sent events, a long download) is in flight: like `deno run main.ts`, it must
 * exit within an orchestrator's grace period (Kubernetes: 30 s; vestibule gives up after 25 s, or
 * `VESTIBULE_SHUTDOWN_GRACE_MS`), not run on until SIGKILL, and a second signal ends it at once.
 */
import assert from "node:assert/strict";
import { deadPort, oneRegion, startUpstream, untilHealthy } from "./_servers.ts";

interface StreamingServe {
  kill(signal: Deno.Signal): void;
  /** `exited with code N`, or `still running` after `ms`. */
  endWithin(ms: number): Promise<string>;
}

/** `deno serve` itself, as a container would start it (see tests/shutdown_test.ts), with an event stream in flight. */
async function withStreamInFlight(
  fn: (serve: StreamingServe) => Promise<void>,
  entry: "deno serve --parallel" | "deno run main.ts" = "deno serve --parallel",
  env: Record<string, string> = {},
): Promise<void> {
  const arrived = Promise.withResolvers<void>();
  const timers = new Set<ReturnType<typeof setInterval>>();
  const up = startUpstream(() => {
    arrived.resolve();
    let timer: ReturnType<typeof setInterval>;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        timer = setInterval(() => {
          try {
            controller.enqueue(new TextEncoder().encode("data: x\n\n"));
          } catch {
            clearInterval(timer);
          }
        }, 200);
        timers.add(timer);
      },
      cancel() {
        clearInterval(timer);
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  const dir = await Deno.makeTempDir({ prefix: "shutdown_stream_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(rules, JSON.stringify(oneRegion(up.url)));
  const port = deadPort();
  const serve = entry === "deno serve --parallel";
  const child = new Deno.Command(Deno.execPath(), {
    args: serve
      ? ["serve", "--parallel", "--allow-all", "--port", String(port), "serve.ts"]
      : ["run", "--allow-all", "main.ts"],
    cwd: new URL("../", import.meta.url),
    env: { VESTIBULE_RULES: rules, NO_COLOR: "1", DENO_JOBS: "2", PORT: String(port), ...env },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let ended = false;
  const status = child.status.then((s) => {
    ended = true;
    return s;
  });
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let reading: Promise<void> | undefined;
  try {
    const base = `http://127.0.0.1:${port}`;
    await untilHealthy(base);
    // Deno 2.9.6 loses a signal that arrives while a worker is still starting (README).
    if (serve) await new Promise((resolve) => setTimeout(resolve, 3000));
    const events = await fetch(`${base}/events`);
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
    await fn({
      kill: (signal) => child.kill(signal),
      async endWithin(ms) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const outcome = await Promise.race([
          status.then((s) => `exited with code ${s.code}`),
          new Promise<string>((resolve) => timer = setTimeout(() => resolve("still running"), ms)),
        ]);
        clearTimeout(timer);
        return outcome;
      },
    });
  } finally {
    if (!ended) child.kill("SIGKILL");
    await status;
    await reader?.cancel().catch(() => {});
    await reading;
    for (const timer of timers) clearInterval(timer);
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A grace period short enough to wait out in a test; the 25 s default is lib/shutdown_grace_test.ts's. */
const SHORT_GRACE = { VESTIBULE_SHUTDOWN_GRACE_MS: "3000" };

for (const entry of ["deno serve --parallel", "deno run main.ts"] as const) {
  Deno.test(`${entry}: a SIGTERM while an event stream is in flight waits out the grace period, then exits 0, not at SIGKILL`, () =>
    withStreamInFlight(
      async (server) => {
        server.kill("SIGTERM");
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
      serve.kill(signal);
      await new Promise((resolve) => setTimeout(resolve, 500));
      serve.kill(signal); // the operator insists
      assert.equal(await serve.endWithin(5_000), "exited with code 0");
    }));
}
