/**
 * vestibule as a real process, under `deno run main.ts` and under `deno serve --parallel`: a stop
 * (SIGTERM, Ctrl-C) lets answers in flight finish.
 */
import assert from "node:assert/strict";
import {
  exitedOf,
  freePort,
  LOOPBACK_ONLY,
  oneRegion,
  startUpstream,
  untilHealthy,
} from "./_servers.ts";
import { serveArgs, startEntry } from "./_shutdown.ts";

const ENTRIES = {
  "deno run main.ts": (_port: number) => ({
    args: ["run", "--allow-all", "main.ts"],
    env: {},
    settleMs: 0,
  }),
  // `deno serve` itself, as a container would start it (`deno task` would stand in between).
  // Deno 2.9.6 loses a SIGTERM that arrives while a worker is still starting (the process then
  // runs until SIGKILL, with a bare `export default { fetch }` module too): wait for the workers.
  "deno serve --parallel": (port: number) => ({
    args: serveArgs(port),
    env: { DENO_JOBS: "2" },
    settleMs: 3000,
  }),
};

for (const [entry, command] of Object.entries(ENTRIES)) {
  Deno.test(`${entry}: a SIGTERM while an answer is in flight: the client still gets it, its log line is written, exit 0`, () =>
    stopsGracefully(command));
}

// Ctrl-C, or `kill -INT` from a process manager: without a listener Deno exits at once.
Deno.test("deno run main.ts: a SIGINT while an answer is in flight: the client still gets it, its log line is written, exit 0", () =>
  stopsGracefully(ENTRIES["deno run main.ts"], "SIGINT"));

async function stopsGracefully(
  command: (port: number) => { args: string[]; env: Record<string, string>; settleMs: number },
  signal: Deno.Signal = "SIGTERM",
) {
  const arrived = Promise.withResolvers<void>();
  const up = startUpstream(async () => {
    arrived.resolve();
    await new Promise((resolve) => setTimeout(resolve, 500));
    return new Response("finished");
  });
  const dir = await Deno.makeTempDir({ prefix: "shutdown_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(rules, JSON.stringify(oneRegion(up.url)));
  const port = freePort();
  const { args, env, settleMs } = command(port);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: new URL("../", import.meta.url),
    env: { ...LOOPBACK_ONLY, PORT: String(port), VESTIBULE_RULES: rules, NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const output = child.output();
  try {
    const base = `http://127.0.0.1:${port}`;
    await untilHealthy(base, exitedOf(child));
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    const answer = fetch(`${base}/slow`);
    await arrived.promise;
    child.kill(signal);
    const res = await answer;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "finished", "the answer in flight was not cut off");
    // Should the process not stop, the test fails here instead of hanging.
    const guard = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const { code, stdout } = await output.finally(() => clearTimeout(guard));
    assert.equal(code, 0);
    const lines = new TextDecoder().decode(stdout).trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(
      lines.some((line) => line.path === "/slow" && line.status === 200),
      "the access line written before exit",
    );
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await output.catch(() => {});
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
}

// With a metrics token, `deno serve --parallel` workers meet on a BroadcastChannel: the channel
// must not keep a stopping worker alive until the grace period's exit timer.
Deno.test("slow stop: deno serve --parallel with a metrics token exits at once on SIGTERM when idle, not after the grace period", async () => {
  const up = startUpstream();
  const server = await startEntry("deno serve --parallel", up.url, {
    env: { VESTIBULE_METRICS_TOKEN: "scrape-token-0123456789" },
  });
  try {
    const scrape = await fetch(`${server.base}/_vestibule/metrics`, {
      headers: { authorization: "Bearer scrape-token-0123456789" },
    });
    assert.match(await scrape.text(), /^vestibule_workers 2$/m, "the workers met on the channel");
    server.child.kill("SIGTERM");
    // The default grace period is 25 s; nothing is in flight.
    assert.equal(await server.endWithin(10_000), "exited with code 0");
  } finally {
    await server.close();
    await up.close();
  }
});
