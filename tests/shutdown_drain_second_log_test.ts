/**
 * After the grace period runs out, every `deno serve --parallel` worker keeps serving the answers in
 * flight for DRAIN_AFTER_GRACE_MS before exiting. An answer that finishes in that second reaches its
 * client, so its access line must be written too (README: the same outcome for an answer in flight
 * and its access line as `deno run main.ts`, which writes the lines still buffered at exit).
 */
import assert from "node:assert/strict";
import { deadPort, oneRegion, startUpstream, untilHealthy } from "./_servers.ts";

const GRACE_MS = 1000;
const DRAIN_AFTER_GRACE_MS = 1000;
const ANSWERS = 240;
/** The answers finish over the last this many ms of that second, eight per ms. */
const SPREAD_MS = 30;

Deno.test("lost log lines: deno serve --parallel writes the access line of every answer a client got in the second after the grace period", async () => {
  const arrived = Promise.withResolvers<void>();
  const signalled = Promise.withResolvers<number>();
  let waiting = 0;
  const up = startUpstream(async (req) => {
    const i = Number(new URL(req.url).pathname.split("-")[1]);
    if (++waiting === ANSWERS) arrived.resolve();
    const at = await signalled.promise;
    // Finishing between SPREAD_MS and 0 ms before the drain second ends.
    const wait = at + GRACE_MS + DRAIN_AFTER_GRACE_MS - SPREAD_MS + (i % SPREAD_MS) -
      performance.now();
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    return new Response("finished");
  });
  const dir = await Deno.makeTempDir({ prefix: "shutdown_drain_second_log_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(rules, JSON.stringify(oneRegion(up.url)));
  const port = deadPort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["serve", "--parallel", "--allow-all", "--port", String(port), "serve.ts"],
    cwd: new URL("../", import.meta.url),
    env: {
      PORT: String(port),
      VESTIBULE_RULES: rules,
      VESTIBULE_SHUTDOWN_GRACE_MS: String(GRACE_MS),
      DENO_JOBS: "2",
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped", // read all along: a reader that keeps up
    stderr: "null",
  }).spawn();
  const output = new Response(child.stdout).text();
  const status = child.status;
  try {
    const base = `http://127.0.0.1:${port}`;
    await untilHealthy(base);
    // Deno 2.9.6 loses a signal that arrives while a worker is still starting (README).
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const path = (i: number) => `/answer-${i}`;
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
    const guard = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const text = await output;
    const { code } = await status.finally(() => clearTimeout(guard));
    assert.equal(code, 0);
    const logged = new Set(text.split("\n").filter(Boolean).map((line) => JSON.parse(line).path));
    const missing = [...answered].filter((p) => !logged.has(p));
    assert.equal(
      `${missing.length} of ${answered.size} answered requests without an access line`,
      `0 of ${answered.size} answered requests without an access line`,
      `missing: ${missing.join(" ")}`,
    );
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await status;
    await output.catch(() => {});
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
});
