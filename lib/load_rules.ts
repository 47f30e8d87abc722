/** @module Turns rules-file text into a compiled {@linkcode Config}: JSON, `${NAME}` references, schema, compile. */
import { decodeConfigFile, parseConfigJson } from "./config_json.ts";
import { issueField, issueMessage } from "./config_issues.ts";
import { z } from "zod";
import { compileRules, type Config, redacted, RulesError } from "./compile_rules.ts";
import { type EnvLookup, showAsWritten, substituteEnv } from "./env_refs.ts";
import { rulesFileSchema } from "./rules_schema.ts";

/** Parses and validates a rules file's text. Throws `SyntaxError`, `ReferenceError` or `RulesError`. */
export function parseRules(text: string, options: { env: EnvLookup; source?: string }): Config {
  const source = options.source ?? "rules";
  const raw = parseConfigJson(text, source);
  const written = new Map<string, string>();
  const substituted = substituteEnv(raw, options.env, written);
  const parsed = rulesFileSchema.safeParse(substituted);
  try {
    if (!parsed.success) throw new RulesError(describeIssues(parsed.error, substituted));
    return compileRules(parsed.data, { fromEnvironment: (value) => written.has(value) });
  } catch (error) {
    if (!(error instanceof RulesError) || written.size === 0) throw error;
    throw new RulesError(
      error.problems.map((problem) => showAsWritten(problem, written, [redacted])),
    );
  }
}

/** Reads the rules file at `path` and compiles it; see {@linkcode parseRules}. */
export async function loadRules(path: string, env: EnvLookup): Promise<Config> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new Deno.errors.NotFound(`Cannot read rules file "${path}": ${(error as Error).message}`);
  }
  const source = `rules file "${path}"`;
  return parseRules(decodeConfigFile(bytes, source), { env, source });
}

/**
 * Rewrites zod issues so each one names the rule (by its `name`, not only its index) and the
 * field, since operators think of rules by name.
 */
function describeIssues(error: z.ZodError, raw: unknown): string[] {
  const rules = (raw as { rules?: unknown })?.rules;
  return error.issues.map((issue) => {
    const path = [...issue.path];
    let where = "";
    if (path[0] === "rules" && typeof path[1] === "number") {
      const name = Array.isArray(rules) ? (rules[path[1]] as { name?: unknown })?.name : undefined;
      where = typeof name === "string" ? `rule "${name}" (rules[${path[1]}])` : `rules[${path[1]}]`;
      path.splice(0, 2);
    }
    const field = issueField(path);
    const message = issueMessage(issue);
    const detail = field ? `${field}: ${message}` : message;
    return where ? `Cannot compile ${where}: ${detail}` : `Invalid rules: ${detail}`;
  });
}
