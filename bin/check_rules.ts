/**
 * @module `deno task check-rules [FILE]`: validates a rules file as start-up does, then runs the
 * route-table tests beside it (`foo.json` → `foo.test.json`). See docs/operations.md.
 */
import { decodeConfigFile } from "../lib/config_json.ts";
import { loadRules } from "../lib/load_rules.ts";
import {
  formatCaseResults,
  parseRouteCases,
  passed,
  routeCasesPath,
  runRouteCases,
} from "../lib/route_cases.ts";
import { parseCommandLine, RULES_ENV_OPTIONS } from "./_command_line.ts";
import { missingHint, type RulesEnv, rulesEnv } from "./_rules_env.ts";

const USAGE = `Usage: deno task check-rules [FILE] [options]

  FILE                The rules file (default: $VESTIBULE_RULES or rules.json)
  --env-file FILE     Values for \${NAME} references missing from the environment
  --placeholder-env   Use a placeholder for variables still missing: http://NAME.invalid
                      in an origin or redirect location, PLACEHOLDER_VALUE_OF_NAME elsewhere
`;

/** Runs the CLI; returns the exit code (0 valid and every case passed, 1 otherwise, 2 usage). */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, RULES_ENV_OPTIONS, USAGE);
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length > 1) {
    console.error(`Expected at most one rules file, got ${positionals.length}\n\n${USAGE}`);
    return 2;
  }
  const rulesPath = positionals[0] ?? Deno.env.get("VESTIBULE_RULES") ?? "rules.json";
  let env: RulesEnv | undefined;
  try {
    env = await rulesEnv({
      envFile: values["env-file"],
      placeholder: values["placeholder-env"],
    });
    const config = await loadRules(rulesPath, env.lookup);
    const placeholders = env.placeholders.length > 0
      ? ` (placeholders for ${env.placeholders.join(", ")})`
      : "";
    const count = config.rules.length === 1 ? "1 rule" : `${config.rules.length} rules`;
    console.log(`${rulesPath}: ${count} OK${placeholders}`);

    const testsPath = routeCasesPath(rulesPath);
    const source = `route-table tests "${testsPath}"`;
    let text: string;
    try {
      text = decodeConfigFile(await Deno.readFile(testsPath), source);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      console.log(`${testsPath}: not found, no route-table tests run`);
      return 0;
    }
    const cases = parseRouteCases(text, source);
    const results = await runRouteCases(cases, config);
    const report = formatCaseResults(results, testsPath);
    await Deno.stdout.write(new TextEncoder().encode(report));
    return results.every(passed) ? 0 : 1;
  } catch (error) {
    console.error((error as Error).message + missingHint(env));
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
