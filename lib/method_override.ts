/**
 * @module Method overrides. Rack's MethodOverride (in every Rails app's default stack), Symfony's
 * `getMethod()` (Laravel) and ASP.NET Core's override middleware run a POST carrying
 * `X-HTTP-Method-Override: DELETE` (or `X-HTTP-Method`, `X-Method-Override`, or a `_method`
 * parameter, as HTML forms send it) as a DELETE. The rules match the request line, so such a
 * POST could reach the route a `methods` rule keeps DELETE away from. Apps that honour no override (Django) make the header harmless, and clients
 * behind proxies that block PUT and DELETE rely on it, so it is forwarded as it is, unless the two
 * readings of the request are routed by different rules: then nobody can say which one the app
 * will run, and the request is refused.
 */
import { valuesAsAppsRead } from "./app_names.ts";
import { cgiName, hasCgiSeparator } from "./cgi_name.ts";
import { bodyCopies } from "./choose_region.ts";
import type { Config, Rule } from "./compile_rules.ts";
import { HttpError } from "./http_error.ts";
import { findRule, type RequestFacts } from "./match_rule.ts";
import type { BufferedBody } from "./request_body.ts";

/** The override headers, as CGI-style servers also read their `_` and `.` spellings. */
const METHOD_OVERRIDES: ReadonlySet<string> = new Set([
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
]);

/** The parameter HTML forms name their method in (Rails' forms, Laravel; Symfony's query too). */
const METHOD_PARAM = "_method";

/** The methods Rack's MethodOverride takes from `_method` (its HTTP_METHODS), but POST. */
const UNREAD_BODY_METHODS = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "LINK", "UNLINK"];

/** A method as the frameworks take it from the header: letters, upper-cased; others ignored. */
const OVERRIDE_VALUE = /^[A-Za-z]+$/;

/**
 * Throws 400 `ambiguous_method` when a POST names, in an override header or a `_method`
 * parameter, a method that the rules route by another rule than `matched` (or by none). Only
 * POSTs: the frameworks above honour overrides on nothing else.
 */
export async function checkMethodOverride(
  config: Config,
  facts: RequestFacts,
  body: BufferedBody,
  matched: Rule,
): Promise<void> {
  if (facts.method !== "POST") return;
  const claims: Array<[string, string]> = [];
  facts.headers.forEach((value, name) => {
    if (METHOD_OVERRIDES.has(hasCgiSeparator(name) ? cgiName(name) : name)) {
      claims.push([name, value.trim()]);
    }
  });
  for (const value of valuesAsAppsRead(facts.searchParams, METHOD_PARAM)) {
    claims.push([METHOD_PARAM, value.trim()]);
  }
  // A body's `_method` only where the body is read anyway (a body matcher read it, a broadcast
  // replays it): reading every POST's would end streaming uploads. See the README.
  if (body.consumed || matched.type === "broadcast") {
    await body.bytes(); // over body_limit_bytes: 413, as the broadcast or matcher answers
    const ctx = { body, config, method: facts.method, headers: facts.headers };
    const copies = await bodyCopies(ctx, METHOD_PARAM);
    // A body the edge cannot read as the apps do (a charset, over MAX_FORM_FIELDS fields,
    // multipart/mixed) may still name a method to Rack or PHP: every one they take counts.
    // Not a Content-Encoding (Rack and PHP do not inflate a body) nor JSON that does not parse.
    const unread = body.encoded || body.readings?.json ? [] : UNREAD_BODY_METHODS;
    for (const value of copies ?? unread) {
      claims.push([METHOD_PARAM, value.trim()]);
    }
  }
  const { rules } = config;
  for (const [name, value] of claims) {
    if (!OVERRIDE_VALUE.test(value)) continue;
    const method = value.toUpperCase();
    if (method === "POST") continue;
    const other = await findRule(rules, { ...facts, method }, body);
    if (other?.rule === matched) continue;
    throw new HttpError(
      400,
      "ambiguous_method",
      `POST with ${name}${name === METHOD_PARAM ? "=" : ": "}${method} is routed by ${
        other ? `rule "${other.rule.name}"` : "no rule"
      }, not "${matched.name}"; send ${method} itself, or drop the header`,
    );
  }
}
