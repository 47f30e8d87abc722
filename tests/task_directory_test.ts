/**
 * `deno task` runs a task in the directory of `deno.json`; the CLIs read the files an operator
 * names from the shell's directory (`INIT_CWD`), as any command does. Before, from a directory of
 * staging files, `deno task check-rules rules.json` checked the repository's own `rules.json` and
 * said OK, and a file only that directory had was "No such file".
 */
import assert from "node:assert/strict";

const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** `deno task NAME ARGS` run from `cwd`, outside the repository, with its deno.json named. */
async function taskIn(cwd: string, task: string, args: string[], config = CONFIG) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--config", config, "-q", task, ...args],
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, out: decode(output.stdout) + decode(output.stderr) };
}

Deno.test("deno task check-rules, explain and sync read the files they are given from the shell's directory", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "task_directory_test_" });
  try {
    // A broken rules.json of the same name as the repository's good one.
    await Deno.writeTextFile(
      `${dir}/rules.json`,
      '{ "regions": {}, "default_region": "nope", "rules": [] }',
    );
    await Deno.copyFile(new URL("../rules.json", import.meta.url), `${dir}/staging.json`);
    await Deno.writeTextFile(`${dir}/staging.env`, "AU_ORIGIN=http://au.internal\n");
    await Deno.writeTextFile(
      `${dir}/staging-sync.json`,
      JSON.stringify({
        owner: "us",
        databases: { us: "${TASK_TEST_UNSET_URL}", au: "${TASK_TEST_UNSET_URL}" },
        tables: [{ name: "subject", primary_key: ["id"] }],
      }),
    );
    await t.step(
      "check-rules rules.json checks the shell's rules.json, not the repository's",
      async () => {
        const { code, out } = await taskIn(dir, "check-rules", ["rules.json", "--placeholder-env"]);
        assert.equal(code, 1, out);
        assert.match(out, /Invalid rules/);
      },
    );
    await t.step("check-rules and explain find a file only the shell's directory has", async () => {
      const checked = await taskIn(dir, "check-rules", ["staging.json", "--placeholder-env"]);
      assert.equal(checked.code, 0, checked.out);
      assert.match(checked.out, /^staging\.json: 7 rules OK/m);
      const explained = await taskIn(dir, "explain", [
        "GET",
        "/dashboard/",
        "--rules",
        "staging.json",
        "--env-file",
        "staging.env",
        "--placeholder-env",
      ]);
      assert.equal(explained.code, 0, explained.out);
      assert.match(explained.out, /^Rule: app \(regional/m);
    });
    await t.step(
      "sync --config reads the shell's file (and stops at its unset variable)",
      async () => {
        const { code, out } = await taskIn(dir, "sync", [
          "--config",
          "staging-sync.json",
          "--once",
        ]);
        assert.equal(code, 2, out);
        assert.match(out, /TASK_TEST_UNSET_URL/);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a task that cd's before running a CLI reads from where it went, not from where deno task was typed", async () => {
  // Every process a task starts inherits INIT_CWD, also one started after the task's own `cd`.
  const dir = await Deno.makeTempDir({ prefix: "task_directory_test_" });
  const repo = new URL("../", import.meta.url).pathname;
  try {
    await Deno.writeTextFile(
      `${dir}/rules.json`,
      '{ "regions": {}, "default_region": "nope", "rules": [] }',
    );
    await Deno.mkdir(`${dir}/staging`);
    await Deno.copyFile(`${repo}rules.json`, `${dir}/staging/rules.json`);
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        tasks: {
          "check-staging": `cd staging && "${Deno.execPath()}" run -A --config ${repo}deno.json ` +
            `${repo}bin/check_rules.ts rules.json --placeholder-env`,
        },
      }),
    );
    const { code, out } = await taskIn(dir, "check-staging", [], `${dir}/deno.json`);
    assert.equal(code, 0, out);
    assert.match(out, /^rules\.json: 7 rules OK/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
