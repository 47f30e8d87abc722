/** @module Turns rules-file text into a compiled {@linkcode Config}: JSON, `${NAME}` references, schema, compile. */
import type { Config } from "./compile_rules.ts";
import type { EnvLookup } from "./env_refs.ts";
import { compileValidated, readRulesText, substituteRules } from "./read_rules.ts";
import { validateRules } from "./rules_validate.ts";

/** Parses and validates a rules file's text. Throws `SyntaxError`, `ReferenceError` or `RulesError`. */
export function parseRules(text: string, options: { env: EnvLookup; source?: string }): Config {
  const rules = substituteRules(text, options.env, options.source ?? "rules");
  return compileValidated(validateRules(rules.substituted), rules);
}

/** Reads the rules file at `path` and compiles it; see {@linkcode parseRules}. */
export async function loadRules(path: string, env: EnvLookup): Promise<Config> {
  const { text, source } = await readRulesText(path);
  return parseRules(text, { env, source });
}
