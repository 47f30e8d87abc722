/** @module Finds the first rule that matches a request: cheap conditions first, the body last. */
import { fieldValuesAsAppsRead, valuesAsAppsRead } from "./app_names.ts";
import { cgiName } from "./cgi_name.ts";
import type { BodyMatcher, CompiledMatch, Rule } from "./compile_rules.ts";
import type { HeaderReader } from "./header_list.ts";
import type { BufferedBody } from "./request_body.ts";
import { foldCase } from "./ocap/canonical_body.ts";

/** What matchers look at, extracted once per request. */
export interface RequestFacts {
  method: string;
  /** Host name without port, lower-cased. */
  hostname: string;
  path: string;
  /** The query's parameters as apps read them ({@linkcode queryAsAppsRead}). */
  searchParams: URLSearchParams;
  headers: HeaderReader;
}

/**
 * The winning rule and the groups of its path regex. The rules tried before it are those before
 * `rule.index`: first match wins.
 */
export interface RuleMatch {
  rule: Rule;
  pathMatch?: RegExpExecArray;
}

/**
 * Checks everything but the body. Returns `false`, or the path regex result (or `true` when the
 * rule has no path), which redirects and `region_from` use for their groups.
 */
export function matchWithoutBody(
  match: CompiledMatch,
  facts: RequestFacts,
): RegExpExecArray | boolean {
  if (match.methods && !match.methods.has(facts.method)) return false;
  let pathMatch: RegExpExecArray | true = true;
  if (match.path) {
    const result = match.path.exec(facts.path);
    if (!result) return false;
    pathMatch = result;
  }
  if (match.host && !match.host.test(facts.hostname)) return false;
  if (match.query) {
    for (const [name, regex] of match.query) {
      // Copies PHP and Rack file under the name count too (` a`, `a[]`, `[a]`).
      if (!everyValueMatches(valuesAsAppsRead(facts.searchParams, name), regex)) return false;
    }
  }
  if (match.headers) {
    for (const [name, regex] of match.headers) {
      const value = facts.headers.get(name);
      if (value === null || !regex.test(value) || !cgiCopiesMatch(facts.headers, name, regex)) {
        return false;
      }
    }
  }
  return pathMatch;
}

/**
 * Whether every other spelling of header `name` that CGI, WSGI and Rack servers (underscores) or
 * PHP behind FastCGI (dots) read as the same `HTTP_…` variable also matches: beside `X-Tenant:
 * acme`, an `X_Tenant: evil` is a copy the app may read instead.
 */
function cgiCopiesMatch(headers: HeaderReader, name: string, regex: RegExp): boolean {
  const dashed = cgiName(name);
  let matches = true;
  headers.forEach((value, other) => {
    if (other !== name && other.length === name.length && cgiName(other) === dashed) {
      matches &&= regex.test(value);
    }
  });
  return matches;
}

/**
 * A repeated parameter (`?a=1&a=2`) matches only when every value does: frameworks disagree on
 * which one they read (Django takes the last, others the first), so the rule must agree with both.
 */
function everyValueMatches(values: string[], regex: RegExp): boolean {
  if (values.length === 0) return false;
  for (const value of values) if (!regex.test(value)) return false;
  return true;
}

function everyValueIs(values: string[], expected: string): boolean {
  if (values.length === 0) return false;
  for (const value of values) if (value !== expected) return false;
  return true;
}

/**
 * Evaluates a body matcher; a body that does not parse simply does not match. The query's copies
 * of a matched name count too: Spring (Servlet §3.1.1) and Symfony's and Laravel's `get()` read
 * the query's before the body's.
 */
export async function matchBody(
  matcher: BodyMatcher,
  body: BufferedBody,
  facts: Pick<RequestFacts, "searchParams">,
): Promise<boolean> {
  const inQuery = (name: string) => valuesAsAppsRead(facts.searchParams, name);
  switch (matcher.kind) {
    case "json": {
      await body.bytes(); // over body_limit_bytes: 413, whatever the type
      // Only a body every app reads as JSON: as a form (`…-urlencoded`, or a POST without a type
      // to Rack), `{"action":"view","x":"&action=delete&"}` holds another action.
      if (!body.readings?.json) return false;
      const subset = matcher.subset;
      if (subset !== null && typeof subset === "object" && !Array.isArray(subset)) {
        for (const [key, expected] of Object.entries(subset)) {
          if (!inQuery(key).every((copy) => copy === expected)) return false;
        }
      }
      const value = await body.json();
      // Go's encoding/json and ASP.NET Core match keys to fields ignoring case, the later key
      // winning: beside `action`, an `ACTION` is the copy they read.
      return containsSubset(value, subset) && !hasCaseVariantKey(value, subset);
    }
    case "form": {
      const fields = await body.form();
      // A repeated field matches only when every copy does, as a repeated query parameter; the
      // copies PHP and Rack file under the name (`a[]`, `[a]`) count too.
      return fields !== undefined &&
        matcher.fields.every(([name, value]) =>
          everyValueIs([...fieldValuesAsAppsRead(fields, name), ...inQuery(name)], value)
        );
    }
    case "regex": {
      const text = await body.text();
      // Express inflates a gzip body before the app reads it: the raw bytes are not its text. A
      // charset vestibule cannot read is no text it can vouch for either.
      return text !== undefined && !body.encoded && matcher.regex.test(text);
    }
  }
}

/**
 * First match wins. Rules without a body matcher are decided synchronously; the body is read
 * only when a rule that inspects it is reached and its other conditions already hold.
 */
export async function findRule(
  rules: readonly Rule[],
  facts: RequestFacts,
  body: BufferedBody,
): Promise<RuleMatch | undefined> {
  for (const rule of rules) {
    const result = matchWithoutBody(rule.match, facts);
    if (result !== false && (!rule.match.body || await matchBody(rule.match.body, body, facts))) {
      return { rule, pathMatch: result === true ? undefined : result };
    }
  }
  return undefined;
}

/**
 * Whether an object of `value` on the way to a key of `subset` holds another key that is the same
 * one with letter case folded ({@linkcode foldCase}, as Go's encoding/json folds).
 */
function hasCaseVariantKey(value: unknown, subset: unknown): boolean {
  if (subset === null || typeof subset !== "object" || Array.isArray(subset)) return false;
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const record = value as Record<string, unknown>;
  const folded = Object.keys(record).map(foldCase);
  for (const [key, expected] of Object.entries(subset)) {
    const fold = foldCase(key);
    if (folded.filter((k) => k === fold).length > 1) return true;
    if (hasCaseVariantKey(record[key], expected)) return true;
  }
  return false;
}

/** Whether `value` contains `subset`: objects by key, recursively; arrays and scalars by equality. */
export function containsSubset(value: unknown, subset: unknown): boolean {
  if (subset !== null && typeof subset === "object" && !Array.isArray(subset)) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
    const record = value as Record<string, unknown>;
    return Object.entries(subset).every(([key, expected]) =>
      Object.hasOwn(record, key) && containsSubset(record[key], expected)
    );
  }
  return deepEqual(value, subset);
}

/** Structural equality of JSON values. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((item, i) => deepEqual(item, other[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length &&
    ka.every((k) =>
      Object.hasOwn(b, k) &&
      deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
    );
}
