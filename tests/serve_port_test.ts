/**
 * `deno task serve` (the self-hosted entry) at start-up: a PORT mistake is one line naming PORT
 * and exit 1, as `deno task start` answers it (tests/start_test.ts), not Deno's trace or a
 * complaint about `serve.ts`.
 */
import assert from "node:assert/strict";

async function serveTask(port: string): Promise<{ code: number; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "serve_port_test_" });
  try {
    const rules = `${dir}/rules.json`;
    await Deno.writeTextFile(
      rules,
      JSON.stringify({
        regions: { us: { origin: "http://127.0.0.1:9" } },
        default_region: "us",
        rules: [{ name: "app", type: "regional" }],
      }),
    );
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["task", "serve"],
      cwd: new URL("../", import.meta.url),
      env: { PORT: port, VESTIBULE_RULES: rules, DENO_JOBS: "2", NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      // A build that started anyway would serve forever: fail, do not hang.
      signal: AbortSignal.timeout(20_000),
    }).output();
    // `deno task` echoes its command line first.
    const lines = new TextDecoder().decode(stderr).split("\n").filter((l) =>
      !/^Task serve /.test(l)
    );
    return { code, stderr: lines.join("\n") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("start-up: deno task serve names a PORT problem, not serve.ts, and prints no stack trace", async (t) => {
  await t.step("PORT set but empty, as a blank manifest entry leaves it", async () => {
    const { code, stderr } = await serveTask("");
    assert.equal(code, 1);
    assert.match(stderr, /PORT/, "the message names the variable to fix");
    assert.doesNotMatch(stderr, /'serve\.ts'/, "not 'serve.ts' as the port");
  });
  await t.step("a port something else listens on", async () => {
    const taken = Deno.listen({ hostname: "0.0.0.0", port: 0 });
    try {
      const { port } = taken.addr as Deno.NetAddr;
      const { code, stderr } = await serveTask(String(port));
      assert.equal(code, 1);
      assert.match(stderr, new RegExp(`port ${port}`), "the message names the port");
      assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
    } finally {
      taken.close();
    }
  });
});
