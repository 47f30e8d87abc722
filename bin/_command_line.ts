/** @module Argument parsing the CLIs share: `--` tolerance, usage on error, `--help`. */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** Options every CLI takes: how to resolve `${NAME}` references, and help. */
export const RULES_ENV_OPTIONS = {
  "env-file": { type: "string" },
  "placeholder-env": { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const satisfies ParseArgsOptionsConfig;

/**
 * Parses `args` (a leading `--` from `deno task x -- …` is dropped). Returns the parsed values,
 * or the exit code when the CLI is done: 0 after printing `usage` for `--help`, 2 after a
 * usage error.
 */
export function parseCommandLine<O extends ParseArgsOptionsConfig & typeof RULES_ENV_OPTIONS>(
  args: string[],
  options: O,
  usage: string,
) {
  let parsed;
  try {
    parsed = parseArgs({
      args: args[0] === "--" ? args.slice(1) : args,
      allowPositionals: true,
      options,
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    return 2;
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(usage);
    return 0;
  }
  return parsed;
}
