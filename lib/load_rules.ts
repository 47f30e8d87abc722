/** @module Turns rules-file text into a compiled {@linkcode Config}: JSON, `${NAME}` references, schema, compile. */
import { parseConfigJson } from "./config_json.ts";
import { z } from "zod";
import { compileRules, type Config, RulesError } from "./compile_rules.ts";
import { type EnvLookup, substituteEnv } from "./env_refs.ts";
import { rulesFileSchema } from "./rules_schema.ts";

/** Parses and validates a rules file's text. Throws `SyntaxError`, `ReferenceError` or `RulesError`. */
export function parseRules(text: string, options: { env: EnvLookup; source?: string }): Config {
  const source = options.source ?? "rules";
  const raw = parseConfigJson(text, source);
  const substituted = substituteEnv(raw, options.env);
  const parsed = rulesFileSchema.safeParse(substituted);
  if (!parsed.success) throw new RulesError(describeIssues(parsed.error, substituted));
  return compileRules(parsed.data);
}

/** Reads the rules file at `path` and compiles it; see {@linkcode parseRules}. */
export async function loadRules(path: string, env: EnvLookup): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Deno.errors.NotFound(`Cannot read rules file "${path}": ${(error as Error).message}`);
  }
  return parseRules(text, { env, source: `rules file "${path}"` });
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
    const field = path.map(String).join(".");
    const message = issueMessage(issue);
    const detail = field ? `${field}: ${message}` : message;
    return where ? `Cannot compile ${where}: ${detail}` : `Invalid rules: ${detail}`;
  });
}

/**
 * zod reports a bad record key as "Invalid key in record", and a value that fits no form of a
 * union as "Invalid input", with the reasons one level down: say those instead.
 */
function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_key" && issue.issues[0]) return issueMessage(issue.issues[0]);
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return issue.message;
  // The forms whose type fits ("2XX" is a string, not a list) say what is wrong inside them.
  const fitting = issue.errors.filter((errors) =>
    !errors.some((inner) => inner.code === "invalid_type" && inner.path.length === 0)
  );
  return (fitting.length > 0 ? fitting : issue.errors).map((errors) =>
    errors.map((inner) => {
      const field = inner.path.map(String).join(".");
      return field ? `${field}: ${issueMessage(inner)}` : issueMessage(inner);
    }).join("; ")
  ).join(", or ");
}
