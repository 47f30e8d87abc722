/**
 * @module Route-table tests: requests with the decision the router must make for each, checked
 * with {@linkcode explainRequest} (the model is Envoy's router check tool).
 */
import { parseConfigJson } from "./config_json.ts";
import { issueField, issueMessage } from "./config_issues.ts";
import type { z } from "zod";
import type { Config } from "./compile_rules.ts";
import { explainRequest, type Explanation, headersAsSent, shownUrl } from "./explain.ts";
import { type RouteCase, routeCasesFileSchema } from "./route_cases_schema.ts";

/** The fields of `expect` that are compared, in the order mismatches are reported. */
const FIELDS = ["rule", "type", "region", "upstream", "reason", "location"] as const;

/**
 * What the router answers itself: a redirect's status, or the error code of a request it refuses
 * after the rule matched.
 */
type AnswerField = "status" | "refused";

/** One field where the decision differs from the expectation. */
export interface Mismatch {
  field: (typeof FIELDS)[number] | AnswerField;
  expected: string;
  actual: string | undefined;
  /** Why the expectation cannot hold, when it names something the rules file lacks. */
  hint?: string;
}

/** The outcome of one case. */
export interface CaseResult {
  /** Position in `cases`. */
  index: number;
  /** The case's name, or its method and URL. */
  label: string;
  /** Method and URL of the request. */
  request: string;
  mismatches: Mismatch[];
  /** The request could not be explained at all (e.g. a URL that is neither absolute nor a path). */
  error?: string;
  /** The router would answer it itself, e.g. `400 bad_method: …`: shown when the case fails. */
  refused?: string;
}

/** The route-table test file beside a rules file: `foo.json` → `foo.test.json`. */
export function routeCasesPath(rulesPath: string): string {
  return rulesPath.replace(/\.json$/i, "") + ".test.json";
}

/**
 * Parses and validates a route-table test file's text. Throws `SyntaxError` for bad JSON and
 * `TypeError` listing every schema problem by case and field.
 */
export function parseRouteCases(text: string, source = "route-table tests"): RouteCase[] {
  const raw = parseConfigJson(text, source);
  const parsed = routeCasesFileSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => describeIssue(issue, raw));
    throw new TypeError(`Invalid ${source}:\n  - ${problems.join("\n  - ")}`);
  }
  return parsed.data.cases;
}

/** Explains every case's request under `config` and compares the fields its `expect` gives. */
export async function runRouteCases(
  cases: readonly RouteCase[],
  config: Config,
): Promise<CaseResult[]> {
  const ruleNames = new Set(config.rules.map((r) => r.name));
  const results: CaseResult[] = [];
  for (const [index, c] of cases.entries()) {
    // A URL's password stays out of CI logs, as explain keeps it out of its output.
    const request = `${c.request.method} ${shownUrl(c.request.url)}`;
    const label = c.name ?? request;
    let actual: Explanation;
    try {
      actual = await explainRequest({
        method: c.request.method,
        url: c.request.url,
        headers: c.request.headers && headersAsSent(c.request.headers),
        body: typeof c.request.body === "object" ? JSON.stringify(c.request.body) : c.request.body,
        clientIp: c.request.client_ip,
      }, config);
    } catch (error) {
      results.push({ index, label, request, mismatches: [], error: (error as Error).message });
      continue;
    }
    const mismatches: Mismatch[] = [];
    for (const field of FIELDS) {
      const expected = c.expect[field];
      if (expected === undefined || expected === actual[field]) continue;
      mismatches.push({ field, expected, actual: actual[field] });
    }
    if (c.expect.status !== undefined && c.expect.status !== actual.status) {
      mismatches.push({
        field: "status",
        expected: String(c.expect.status),
        actual: actual.status === undefined ? undefined : String(actual.status),
      });
    }
    // A request the router refuses after its rule matched (a redirect its groups would move off
    // its host, a body over the limit) reaches no upstream: it passes only when expected so.
    const refusedCode = actual.refused?.code;
    if (c.expect.refused !== refusedCode && (c.expect.refused || mismatches.length === 0)) {
      mismatches.push({
        field: "refused",
        expected: c.expect.refused ?? "(none: routed)",
        actual: refusedCode,
      });
    }
    if (!ruleNames.has(c.expect.rule)) {
      const m = mismatches.find((m) => m.field === "rule");
      if (m) m.hint = `no rule is named "${c.expect.rule}"`;
    }
    const { refused, servedBy, notes } = actual;
    const answered = refused
      ? `${refused.status} ${refused.code}: ${refused.message}`
      // vestibule's own endpoints and OCAP's mount: no rule is tried.
      : servedBy
      ? notes[0]
      : undefined;
    results.push({ index, label, request, mismatches, ...(answered ? { refused: answered } : {}) });
  }
  return results;
}

/** Whether a case passed. */
export function passed(result: CaseResult): boolean {
  return result.error === undefined && result.mismatches.length === 0;
}

/**
 * A report for people: one block per failed case with expected vs actual per field, then a
 * summary line such as `rules.test.json: 2 of 14 cases failed`.
 */
export function formatCaseResults(results: readonly CaseResult[], source: string): string {
  const lines: string[] = [];
  for (const r of results) {
    if (passed(r)) continue;
    lines.push(`FAIL cases[${r.index}] "${r.label}"`);
    if (r.label !== r.request) lines.push(`  request: ${r.request}`);
    if (r.error !== undefined) lines.push(`  error: ${r.error}`);
    if (r.refused !== undefined) lines.push(`  the router answers it itself: ${r.refused}`);
    for (const m of r.mismatches) {
      const actual = m.actual === undefined ? "(none)" : `"${m.actual}"`;
      const hint = m.hint ? ` (${m.hint})` : "";
      lines.push(`  ${m.field}: expected "${m.expected}", got ${actual}${hint}`);
    }
  }
  const failed = results.filter((r) => !passed(r)).length;
  const plural = results.length === 1 ? "case" : "cases";
  lines.push(
    failed === 0
      ? `${source}: ${results.length} ${plural} passed`
      : `${source}: ${failed} of ${results.length} ${plural} failed`,
  );
  return lines.join("\n") + "\n";
}

/** Names the case (by `name` when it has one) and the field of a schema problem. */
function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const path = [...issue.path];
  let where = "";
  if (path[0] === "cases" && typeof path[1] === "number") {
    const cases = (raw as { cases?: unknown })?.cases;
    const name = Array.isArray(cases) ? (cases[path[1]] as { name?: unknown })?.name : undefined;
    where = typeof name === "string" ? `cases[${path[1]}] "${name}"` : `cases[${path[1]}]`;
    path.splice(0, 2);
  }
  const field = issueField(path);
  const message = issueMessage(issue);
  const detail = field ? `${field}: ${message}` : message;
  return where ? `${where}: ${detail}` : detail;
}
