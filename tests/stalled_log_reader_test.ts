/**
 * vestibule as a real process whose stdout nobody reads (a stalled log shipper, a Docker log
 * driver in blocking mode): the access log must not stop it answering.
 */
import assert from "node:assert/strict";
import { freePort, LOOPBACK_ONLY, startUpstream } from "./_servers.ts";

Deno.test("denial of service: a log reader that stops reading stdout does not stop vestibule answering", async () => {
  const upstream = startUpstream();
  const dir = await Deno.makeTempDir({ prefix: "stalled_log_reader_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(
    rules,
    JSON.stringify({
      regions: { us: { origin: upstream.url } },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    }),
  );
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts"],
    cwd: new URL("../", import.meta.url),
    env: { ...LOOPBACK_ONLY, PORT: String(port), VESTIBULE_RULES: rules, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped", // and never read: the pipe (64 KiB) fills, then every write waits
    stderr: "null",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0;; i++) {
      try {
        await (await fetch(`${url}/_vestibule/health`)).body?.cancel();
        break;
      } catch {
        assert.ok(i < 100, "vestibule did not start");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    // About 300 bytes a line: 1,000 lines are several times the pipe and one 64 KiB batch.
    const path = `/${"a".repeat(200)}`;
    let answered = 0;
    for (let i = 0; i < 1000; i++) {
      const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(2000) })
        .catch((error) => error);
      if (!(res instanceof Response)) break;
      await res.body?.cancel();
      answered++;
    }
    const health = await fetch(`${url}/_vestibule/health`, { signal: AbortSignal.timeout(2000) })
      .then(async (res) => `${res.status} ${await res.text()}`, (error) => String(error));
    assert.equal(
      `${answered} answered, health ${health}`,
      '1000 answered, health 200 {"status":"ok"}',
    );
    // A stop still ends it: with about 300 KB queued behind the stalled reader (nothing dropped),
    // a synchronous write at exit blocked forever. The second SIGTERM does not wait for the grace.
    child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 200));
    child.kill("SIGTERM");
    let timer;
    const exited = await Promise.race([
      child.status.then((status) => `exited ${status.code}`),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve("still running after 5 s"), 5000);
      }),
    ]);
    clearTimeout(timer);
    assert.equal(exited, "exited 0");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await child.stdout.cancel();
    await upstream.close();
    await Deno.remove(dir, { recursive: true });
  }
});
