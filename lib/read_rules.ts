/**
 * @module The steps of loading a rules file around its schema check, none of which needs zod:
 * reading the file, substituting `${NAME}` references, and compiling what the check passed.
 * `load_rules.ts` checks in process, `serve_rules.ts` in a worker.
 */
import { decodeConfigFile, parseConfigJson } from "./config_json.ts";
import { compileRules, type Config, redacted, RulesError } from "./compile_rules.ts";
import { type EnvLookup, showAsWritten, substituteEnv } from "./env_refs.ts";
import type { RulesValidation } from "./rules_validate.ts";

/** A rules file's text, and how errors name it. */
export interface RulesText {
  text: string;
  source: string;
}

/** Reads the rules file at `path` as UTF-8; a missing or unreadable file is `NotFound`. */
export async function readRulesText(path: string): Promise<RulesText> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new Deno.errors.NotFound(`Cannot read rules file "${path}": ${(error as Error).message}`);
  }
  const source = `rules file "${path}"`;
  return { text: decodeConfigFile(bytes, source), source };
}

/** The parsed file with its references substituted, and each substituted string as written. */
export interface SubstitutedRules {
  substituted: unknown;
  written: Map<string, string>;
}

/** Parses the JSON and substitutes `${NAME}` references. Throws `SyntaxError`, `ReferenceError`. */
export function substituteRules(text: string, env: EnvLookup, source: string): SubstitutedRules {
  const written = new Map<string, string>();
  const substituted = substituteEnv(parseConfigJson(text, source), env, written);
  return { substituted, written };
}

/**
 * Compiles what the schema check passed, or throws its problems as a `RulesError`; either way a
 * value that came from a `${NAME}` is shown as the reference, never as its value.
 */
export function compileValidated(
  validation: RulesValidation,
  { written }: Pick<SubstitutedRules, "written">,
): Config {
  try {
    if ("problems" in validation) throw new RulesError(validation.problems);
    return compileRules(validation.data, { fromEnvironment: (value) => written.has(value) });
  } catch (error) {
    if (!(error instanceof RulesError) || written.size === 0) throw error;
    throw new RulesError(
      error.problems.map((problem) => showAsWritten(problem, written, [redacted])),
    );
  }
}
