/**
 * @module The schema check of a rules file, the one step that needs zod. `load_rules.ts` runs it
 * in process; `serve_rules.ts` runs it in a worker, so a serving isolate never loads zod.
 */
import type { z } from "zod";
import { issueField, issueMessage } from "./config_issues.ts";
import { type RulesFile, rulesFileSchema } from "./rules_schema.ts";

/** The file as the schema parsed it (defaults filled in), or what is wrong with it. */
export type RulesValidation = { data: RulesFile } | { problems: string[] };

/** Checks rules whose `${NAME}` references are substituted; plain data in, plain data out. */
export function validateRules(substituted: unknown): RulesValidation {
  const parsed = rulesFileSchema.safeParse(substituted);
  if (parsed.success) return { data: parsed.data };
  return { problems: describeIssues(parsed.error, substituted) };
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
