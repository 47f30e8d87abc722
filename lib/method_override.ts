/**
 * @module Method overrides. Rack's MethodOverride (in every Rails app's default stack), Symfony's
 * `getMethod()` (Laravel) and ASP.NET Core's override middleware run a POST carrying
 * `X-HTTP-Method-Override: DELETE` (or `X-HTTP-Method`, `X-Method-Override`, or a `_method`
 * parameter, as HTML forms send it) as a DELETE. The rules match the request line, so such a
 * POST could reach the route a `methods` rule keeps DELETE away from. Apps that honour no override
 * (Django) make the header harmless, and clients behind proxies that block PUT and DELETE rely on
 * it, so it is forwarded as it is, unless the two readings of the request are routed by different
 * rules: then nobody can say which one the app will run, and the request is refused.
 */
import { valuesAsAppsRead } from "./app_names.ts";
import { cgiName, hasCgiSeparator } from "./cgi_name.ts";
import { bodyCopies, jsonCopies } from "./choose_region.ts";
import type { Config, Rule } from "./compile_rules.ts";
import { HttpError } from "./http_error.ts";
import { findRule, type RequestFacts } from "./match_rule.ts";
import { mediaTypeParameter } from "./media_type.ts";
import { type BufferedBody, strictJson } from "./request_body.ts";
import { UTF8_KEEP_BOM } from "./multipart_fields.ts";

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
    const copies = await bodyCopies(ctx, METHOD_PARAM) ?? await overrideCopies(body);
    for (const value of copies) {
      claims.push([METHOD_PARAM, value.trim()]);
    }
  }
  const { rules } = config;
  // Each method once: a form may repeat `_method` thousands of times, and a body matcher's regex
  // would run for every copy.
  const tried = new Set(["POST"]);
  for (const [name, value] of claims) {
    if (!OVERRIDE_VALUE.test(value)) continue;
    const method = value.toUpperCase();
    if (tried.has(method)) continue;
    tried.add(method);
    const other = await findRule(rules, { ...facts, method }, body);
    if (other?.rule === matched) continue;
    throw new HttpError(
      400,
      "ambiguous_method",
      `POST with ${name}${name === METHOD_PARAM ? "=" : ": "}${method} is routed by ${
        other ? `rule "${other.rule.name}"` : "no rule"
      }, not "${matched.name}"; send ${method} itself, or drop ${
        name === METHOD_PARAM ? "the parameter" : "the header"
      }`,
    );
  }
}

/**
 * Whether `_method=PUT` in a form of this charset is its ASCII bytes: none named, or a label the
 * WHATWG decoder knows and that is not UTF-16. ASP.NET Core and Java decode a form in UTF-16 under
 * many more labels than a list catches (`unicode`, `iso-10646-ucs-2`, `unicodeFFFE`,
 * `UnicodeLittleUnmarked`), and in UTF-32, UTF-7 and EBCDIC, which TextDecoder does not know.
 */
function asciiCompatible(charset: string): boolean {
  if (charset === "") return true;
  try {
    return !new TextDecoder(charset).encoding.startsWith("utf-16");
  } catch {
    return false;
  }
}

/**
 * `_method` in a body {@linkcode bodyCopies} reads no parameters from alike, as the frameworks
 * that honour it read it: Rack and PHP take a form's bytes whatever its charset and however many
 * fields (up to Rack 3's 4096: a superset of PHP's first 1000), Laravel json_decodes a JSON body
 * whatever charset it declares. Nothing from a Content-Encoding'd body (neither inflates one) nor
 * from JSON json_decode refuses; every method Rack takes from anything else (multipart/mixed, a
 * UTF-16 form).
 */
async function overrideCopies(body: BufferedBody): Promise<string[]> {
  if (body.encoded) return [];
  const readings = body.readings;
  const bytes = await body.bytes();
  if (readings?.json) return jsonCopies(strictJson(bytes)?.value, METHOD_PARAM);
  const charset = mediaTypeParameter(body.contentType ?? "", "charset") ?? "";
  if (readings?.form && asciiCompatible(charset)) {
    const fields = firstFields(UTF8_KEEP_BOM.decode(bytes));
    return valuesAsAppsRead(new URLSearchParams(fields), METHOD_PARAM);
  }
  return UNREAD_BODY_METHODS;
}

/**
 * Rack 3 reads at most 4096 fields of a form (PHP 1000): no field after them names the method,
 * and a body of a million empty fields is not parsed whole.
 */
const MAX_OVERRIDE_FIELDS = 4096;

/** `form` up to its {@linkcode MAX_OVERRIDE_FIELDS}th field. */
function firstFields(form: string): string {
  let at = -1;
  for (let field = 0; field < MAX_OVERRIDE_FIELDS; field++) {
    at = form.indexOf("&", at + 1);
    if (at === -1) return form;
  }
  return form.slice(0, at);
}
