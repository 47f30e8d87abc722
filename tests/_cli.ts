/** @module Test helper: runs one of the `bin/` CLIs in a subprocess, as `deno task` would. */
import { LOOPBACK_ONLY } from "./_servers.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Only what Deno needs to find its cache: a rules variable set in the shell must not leak in. */
const KEPT_ENV = Object.fromEntries(
  ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME"].flatMap((name) => {
    const value = Deno.env.get(name);
    return value === undefined ? [] : [[name, value]];
  }),
);

/** What a CLI run produced. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `deno run -A <script> <args>` from the repository root with a minimal environment, plus
 * `env` when given.
 */
export function runCli(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  return runDeno(["run", "-A", script, ...args], env);
}

/** Runs `deno task <task> <args>`: the task's own permissions, as an operator runs it. */
export function runTask(task: string, args: string[]): Promise<CliResult> {
  return runDeno(["task", "-q", task, ...args]);
}

async function runDeno(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    clearEnv: true,
    env: { ...KEPT_ENV, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/**
 * Starts `deno run main.ts` on port 0 with `env` and returns how it ended; a start that did not
 * fail serves until the timeout kills it, which fails the test rather than hanging it.
 */
export async function startMain(
  env: Record<string, string>,
): Promise<{ code: number; stderr: string }> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts"],
    cwd: ROOT,
    env: { ...LOOPBACK_ONLY, PORT: "0", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).output();
  return { code, stderr: new TextDecoder().decode(stderr) };
}

/** Runs `fn` with a new temporary directory, removed afterwards. */
export async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vestibule_cli_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** `deno task explain` with `rules` written to a temporary rules file, and `args` after it. */
export async function runExplain(rules: unknown, args: string[]): Promise<CliResult> {
  let result!: CliResult;
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/rules.json`, JSON.stringify(rules));
    result = await runCli("bin/explain.ts", [...args, "--rules", `${dir}/rules.json`]);
  });
  return result;
}
