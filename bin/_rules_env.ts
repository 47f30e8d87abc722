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
 * A `$NAME` or `${…}` (or `\$`) in an env-file value: `deno run --env-file` expands it, with rules
 * of its own (`"${A}"b` drops the `b`, `${A:-x}` is empty), while `node:util`'s `parseEnv` keeps
 * the text. Such a value is refused rather than passed on as a different origin or secret.
 */
const EXPANDED_BY_DENO = /\$(?:\{|[A-Za-z_])/;

/**
 * The process environment wins, then the `--env-file` (as with `deno run --env-file`), then,
 * with `placeholder`, {@linkcode placeholderValue}. Throws `Deno.errors.NotFound` for an
 * unreadable env file, and (on lookup) `ReferenceError` for a file value that refers to another
 * variable ({@linkcode EXPANDED_BY_DENO}).
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
    const shell = Deno.env.get(name);
    const value = shell ?? (Object.hasOwn(fromFile, name) ? fromFile[name] : undefined);
    if (shell === undefined && value !== undefined && EXPANDED_BY_DENO.test(value)) {
      throw new ReferenceError(
        `Cannot read ${name} from "${options.envFile}": its value refers to another variable ` +
          "($NAME or ${…}), which deno run --env-file would expand and this tool does not; " +
          `write the value out, or run under: deno run --env-file=${options.envFile} -A bin/…`,
      );
    }
    if (value !== undefined || !options.placeholder) return value;
    if (!placeholders.includes(name)) placeholders.push(name);
    return placeholderValue(name);
  };
  return { lookup, placeholders };
}
