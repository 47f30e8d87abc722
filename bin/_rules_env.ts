/**
 * @module Where the CLIs find `${NAME}` values for a rules file: the environment, an env file,
 * and optionally placeholders, so rules can be checked and explained away from production.
 */
import type { EnvLookup } from "../lib/env_refs.ts";

/** The lookup to pass to `loadRules`, and the names it had to make up. */
export interface RulesEnv {
  lookup: EnvLookup;
  /** Variables that were missing and got a placeholder, in first-use order. */
  placeholders: string[];
  /** Variables that were missing and got nothing (no `--placeholder-env`). */
  missing: string[];
}

/**
 * What to add to an error the rules file gave when a variable was missing: start-up's message
 * names the variable, and a newcomer running a CLI away from production needs the way round it.
 */
export function missingHint(env: RulesEnv | undefined): string {
  if (!env || env.missing.length === 0) return "";
  return "\n(set it in the environment, give it with --env-file FILE, or check with placeholders: " +
    "--placeholder-env)";
}

/**
 * The value used for a missing variable under `--placeholder-env`: in an `origin` or a redirect
 * `location`, an origin that never resolves; in a `path`, `/PLACEHOLDER_VALUE_OF_NAME`; elsewhere
 * that token without the `/`, which a pin cookie or header name, a method, a secret and an OCAP
 * key (16 characters or more) all take.
 */
export function placeholderValue(name: string, at: readonly PropertyKey[] = ["origin"]): string {
  const field = at.at(-1);
  if (field === "origin" || field === "location") return `http://${name}.invalid`;
  const token = `PLACEHOLDER_VALUE_OF_${name}`;
  return field === "path" ? `/${token}` : token;
}

/**
 * The process environment wins, then the `--env-file` (read by Deno itself, exactly as
 * `deno run --env-file` reads it at start-up: `$NAME` and `${NAME}` expanded, quotes and escapes
 * by Deno's rules, which `node:util`'s `parseEnv` does not share), then, with `placeholder`,
 * {@linkcode placeholderValue}. Throws `Deno.errors.NotFound` for an env file Deno cannot read.
 */
export async function rulesEnv(
  options: { envFile?: string; placeholder?: boolean },
): Promise<RulesEnv> {
  const fromFile = options.envFile === undefined ? {} : await readEnvFile(options.envFile);
  const placeholders: string[] = [];
  const missing: string[] = [];
  const lookup: EnvLookup = (name, at) => {
    const value = Deno.env.get(name) ??
      (Object.hasOwn(fromFile, name) ? fromFile[name] : undefined);
    if (value !== undefined) return value;
    if (!options.placeholder) {
      missing.push(name);
      return value;
    }
    if (!placeholders.includes(name)) placeholders.push(name);
    return placeholderValue(name, at);
  };
  return { lookup, placeholders, missing };
}

/**
 * The environment `deno run --env-file=<file>` starts with, from a `deno eval` run that way:
 * Deno's env-file reader is not an API, and any other parser reads some values differently.
 */
async function readEnvFile(file: string): Promise<Record<string, string>> {
  try {
    // Deno only warns about a file it cannot find, and goes on. Not read here: a pipe
    // (`--env-file <(sops -d prod.env)`) can be read once, by the child.
    const info = await Deno.stat(file);
    // `deno eval --env-file=<dir>` only warns, and every variable would go missing.
    if (info.isDirectory) throw new Error("it is a directory");
  } catch (error) {
    throw new Deno.errors.NotFound(
      `Cannot read env file "${file}": ${(error as Error).message}`,
    );
  }
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--no-config",
      `--env-file=${file}`,
      "console.log(JSON.stringify(Deno.env.toObject()))",
    ],
    env: { NO_COLOR: "1" }, // a plain message for the error below
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    const reason = new TextDecoder().decode(stderr).trim();
    throw new Deno.errors.NotFound(`Cannot read env file "${file}": ${reason}`);
  }
  return JSON.parse(new TextDecoder().decode(stdout));
}
