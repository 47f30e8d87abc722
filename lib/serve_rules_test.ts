import assert from "node:assert/strict";
import { loadRules } from "./load_rules.ts";
import { loadRulesForServing } from "./serve_rules.ts";

const shipped = new URL("../rules.json", import.meta.url).pathname;
/** Every `${NAME}` the shipped rules use, as `check-rules --placeholder-env` would set it. */
const placeholders = (name: string) =>
  name.endsWith("ORIGIN") ? `http://${name.toLowerCase()}.invalid` : `${name.toLowerCase()}-value`;

/** What `loadRulesForServing` and `loadRules` give for `path`: the config, or the error. */
async function both(path: string, env: (name: string) => string | undefined) {
  const outcome = (loading: Promise<unknown>) =>
    loading.then(
      (config) => ({ config }),
      (error: Error) => ({ error: `${error.name}: ${error.message}` }),
    );
  return [await outcome(loadRulesForServing(path, env)), await outcome(loadRules(path, env))];
}

Deno.test("heap: a serving process never loads zod; the rules file is checked in a worker", async () => {
  // zod leaves its global config on `globalThis` once loaded; main.ts imported (as serve.ts
  // imports it) loads the rules and builds the app without listening.
  const probe = 'await import("./main.ts"); console.log("__zod_globalConfig" in globalThis); ' +
    "Deno.exit(0);";
  const env: Record<string, string> = { VESTIBULE_RULES: shipped, NO_COLOR: "1" };
  for (const name of ["AU_ORIGIN", "US_ORIGIN", "WEBSITE_ORIGIN", "AU_SECRET"]) {
    env[name] = placeholders(name);
  }
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", probe],
    cwd: new URL("..", import.meta.url),
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  assert.equal(code, 0, text(stderr));
  assert.equal(text(stdout).trim(), "false", "zod was loaded into the serving isolate");
});

Deno.test("loadRulesForServing() compiles what loadRules() compiles, the schema checked in a worker", async (t) => {
  await t.step("the shipped rules.json", async () => {
    const [served, loaded] = await both(shipped, placeholders);
    assert.ok("config" in served, JSON.stringify(served));
    assert.deepEqual(served, loaded);
  });
  const dir = await Deno.makeTempDir({ prefix: "serve_rules_test_" });
  try {
    await t.step(
      "a schema error names the rule and field, with a secret shown as its reference",
      async () => {
        const path = `${dir}/bad.json`;
        await Deno.writeTextFile(
          path,
          JSON.stringify({
            regions: { us: { origin: "http://127.0.0.1:9" } },
            default_region: "us",
            rules: [{
              name: "app",
              type: "regional",
              match: { pathh: "x", host: "^${HOST_SECRET}$" },
            }],
          }),
        );
        const [served, loaded] = await both(path, () => "s3cr3t.example");
        assert.deepEqual(served, loaded);
        assert.match(
          JSON.stringify(served),
          /RulesError: Cannot compile rule \\"app\\" \(rules\[0\]\): match: Unrecognized key: \\"pathh\\"/,
        );
        assert.doesNotMatch(JSON.stringify(served), /s3cr3t/);
      },
    );
    await t.step("where no worker can start, the check runs in this process", async () => {
      const { Worker } = globalThis;
      globalThis.Worker = class {
        constructor() {
          throw new Error("no workers here");
        }
      } as unknown as typeof Worker;
      try {
        const [served, loaded] = await both(shipped, placeholders);
        assert.deepEqual(served, loaded);
      } finally {
        globalThis.Worker = Worker;
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts with --allow-read of its rules file alone prints no worker error at start-up", async (t) => {
  // Least privilege an operator may choose: main.ts itself needs to read only its rules file (its
  // modules load without read permission), but a worker needs read access to every module it loads.
  const dir = await Deno.makeTempDir({ prefix: "serve_rules_test_" });
  /** Runs main.ts as `deno task start` does, read access narrowed to `rules`; its exit and stderr. */
  async function start(rules: string, env: Record<string, string>) {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        `--allow-read=${rules}`,
        "--allow-write",
        "main.ts",
      ],
      cwd: new URL("..", import.meta.url),
      env: { VESTIBULE_RULES: rules, NO_COLOR: "1", ...env },
      stdout: "null",
      stderr: "piped",
    }).output();
    return { code, stderr: new TextDecoder().decode(stderr) };
  }
  try {
    const regions = { us: { origin: "http://127.0.0.1:9" } };
    await t.step("a schema error is the one line on stderr", async () => {
      const rules = `${dir}/bad.json`;
      await Deno.writeTextFile(
        rules,
        JSON.stringify({
          regions,
          default_region: "us",
          rules: [{ name: "app", type: "regional", match: { pathh: "x" } }],
        }),
      );
      const { code, stderr } = await start(rules, {});
      assert.equal(code, 1);
      assert.equal(
        stderr,
        'vestibule: Cannot compile rule "app" (rules[0]): match: Unrecognized key: "pathh"\n',
      );
    });
    await t.step(
      "valid rules load without an error line (the bad PORT stops it after)",
      async () => {
        const rules = `${dir}/good.json`;
        await Deno.writeTextFile(
          rules,
          JSON.stringify({
            regions,
            default_region: "us",
            rules: [{ name: "app", type: "regional" }],
          }),
        );
        const { code, stderr } = await start(rules, { PORT: "not-a-port" });
        assert.equal(code, 1);
        assert.match(stderr, /^vestibule: [^\n]*PORT[^\n]*\n$/);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadRulesForServing() leaves no worker running (a process that only loads rules exits)", async () => {
  const script = `
    import { loadRulesForServing } from ${
    JSON.stringify(new URL("./serve_rules.ts", import.meta.url).href)
  };
    const env = { AU_ORIGIN: "http://a.internal", US_ORIGIN: "http://u.internal", AU_SECRET: "s3cr3t",
      WEBSITE_ORIGIN: "http://w.internal" };
    const config = await loadRulesForServing(${
    JSON.stringify(new URL("../rules.json", import.meta.url).pathname)
  }, (n) => env[n]);
    console.log(config.rules.length);
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  const { code, stdout, stderr } = await child.output();
  clearTimeout(timer);
  assert.equal(
    code,
    0,
    `still running after 10 s (a live worker keeps it up): ${new TextDecoder().decode(stderr)}`,
  );
  assert.match(new TextDecoder().decode(stdout), /^\d+\n$/);
});
