/**
 * `deno serve --parallel` (the self-hosted `deno task serve`) stopped while an answer that does not
 * end by itself (server-sent events, a long download) is in flight: like `deno run main.ts`, it must
 * exit within an orchestrator's grace period (Kubernetes: 30 s), not run on until SIGKILL.
 */
import assert from "node:assert/strict";
import { deadPort, startUpstream } from "./_servers.ts";

Deno.test("deno serve --parallel: a SIGTERM while an event stream is in flight ends the process within 30 s, as main.ts does in 25 s", async () => {
  const arrived = Promise.withResolvers<void>();
  const timers = new Set<ReturnType<typeof setInterval>>();
  const up = startUpstream(() => {
    arrived.resolve();
    const encoder = new TextEncoder();
    let timer: ReturnType<typeof setInterval>;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        let n = 0;
        timer = setInterval(() => {
          try {
            controller.enqueue(encoder.encode(`data: ${n++}\n\n`));
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
  await Deno.writeTextFile(
    rules,
    JSON.stringify({
      regions: { us: { origin: up.url } },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    }),
  );
  const port = deadPort();
  // `deno serve` itself, as a container would start it (see tests/shutdown_test.ts).
  const child = new Deno.Command(Deno.execPath(), {
    args: ["serve", "--parallel", "--allow-all", "--port", String(port), "serve.ts"],
    cwd: new URL("../", import.meta.url),
    env: { PORT: String(port), VESTIBULE_RULES: rules, NO_COLOR: "1", DENO_JOBS: "2" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let ended = false;
  const status = child.status.then((s) => {
    ended = true;
    return s;
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0;; i++) {
      try {
        await (await fetch(`${base}/_vestibule/health`)).body?.cancel();
        break;
      } catch (error) {
        if (i > 200) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    // Deno 2.9.6 loses a SIGTERM that arrives while a worker is still starting: wait for them.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const events = await fetch(`${base}/events`);
    assert.equal(events.status, 200);
    const reader = events.body!.getReader();
    await reader.read();
    await arrived.promise;
    child.kill("SIGTERM");
    const reading = (async () => {
      try {
        while (!(await reader.read()).done) { /* the stream runs on */ }
      } catch { /* cut off at exit */ }
    })();
    // Kubernetes' default terminationGracePeriodSeconds: after it, SIGKILL.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      status.then((s) => `exited with code ${s.code}`),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve("still running 30 s after SIGTERM"), 30_000);
      }),
    ]);
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
    await reading;
    assert.equal(outcome, "exited with code 0");
  } finally {
    if (!ended) child.kill("SIGKILL");
    await status;
    for (const timer of timers) clearInterval(timer);
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
});
