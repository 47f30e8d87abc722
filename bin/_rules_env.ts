/**
 * @module Where the CLIs find `${NAME}` values for a rules file: the environment, an env file,
 * and optionally placeholders, so rules can be checked and explained away from production.
 */
import { parseEnv } from "node:util";
import type { EnvLookup } from "../lib/env_refs.ts";

/** The lookup to pass to `loadRules`, and the names it had to make up. */
export interface RulesEnv {
  lookup: EnvLookup;
  /** Variables that were missing and got a placeholder, in first-use order. */
  placeholders: string[];
}

/** The value used for a missing variable under `--placeholder-env`: an origin that never resolves. */
export function placeholderValue(name: string): string {
  return `http://${name}.invalid`;
}

/**
 * The process environment wins, then the `--env-file` (as with `deno run --env-file`), then,
 * with `placeholder`, {@linkcode placeholderValue}. Throws `Deno.errors.NotFound` for an
 * unreadable env file.
 */
export async function rulesEnv(
  options: { envFile?: string; placeholder?: boolean },
): Promise<RulesEnv> {
  let fromFile: Record<string, string> = {};
  if (options.envFile !== undefined) {
    try {
      fromFile = parseEnv(await Deno.readTextFile(options.envFile)) as Record<string, string>;
    } catch (error) {
      throw new Deno.errors.NotFound(
        `Cannot read env file "${options.envFile}": ${(error as Error).message}`,
      );
    }
  }
  const placeholders: string[] = [];
  const lookup: EnvLookup = (name) => {
    const value = Deno.env.get(name) ??
      (Object.hasOwn(fromFile, name) ? fromFile[name] : undefined);
    if (value !== undefined || !options.placeholder) return value;
    if (!placeholders.includes(name)) placeholders.push(name);
    return placeholderValue(name);
  };
  return { lookup, placeholders };
}
