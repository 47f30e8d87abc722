/**
 * `deno task dev` runs vestibule with the top-level `rules.json` (dev/stack.ts): a `VESTIBULE_RULES`
 * left in the operator's shell from the Deploy section must not swap in another rules file behind
 * the banner that describes the shipped one.
 */
import assert from "node:assert/strict";
import { deadPort } from "./_servers.ts";

Deno.test("deno task dev: a VESTIBULE_RULES in the shell does not replace the stack's rules.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dev_stack_env_" });
  // Someone's production-like rules: their own origins, none of the stack's monoliths.
  const rules = `${dir}/prod.json`;
  await Deno.writeTextFile(
    rules,
    JSON.stringify({
      regions: { us: { origin: "http://127.0.0.1:9" } },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    }),
  );
  const port = deadPort();
  const stack = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "dev/stack.ts"],
    cwd: new URL("../", import.meta.url),
    env: { PORT: String(port), VESTIBULE_RULES: rules, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0;; i++) {
      try {
        await (await fetch(`${base}/_vestibule/health`)).body?.cancel();
        break;
      } catch (error) {
        if (i > 200) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const home = await fetch(`${base}/`);
    const about = await fetch(`${base}/about`);
    assert.deepEqual(
      [home.status, (await home.text()).match(/Served by region US/)?.[0]],
      [200, "Served by region US"],
    );
    assert.deepEqual(
      [about.status, (await about.text()).match(/Served by the global website/)?.[0]],
      [200, "Served by the global website"],
    );
  } finally {
    stack.kill("SIGTERM");
    await stack.status;
    await Deno.remove(dir, { recursive: true });
  }
});
