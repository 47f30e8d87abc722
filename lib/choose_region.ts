/** @module Which region a `regional` rule sends a request to, and why. */
import type { Config, RegionalRule } from "./compile_rules.ts";
import type { CookiePolicy } from "./forward.ts";
import type { RegionPin } from "./pin.ts";
import type { RouteContext } from "./route_context.ts";
import { fieldValuesAsAppsRead, filedUnder, valuesAsAppsRead } from "./app_names.ts";
import { declaresUtf8 } from "./media_type.ts";
import { urlencodedParams } from "./request_body.ts";

/**
 * The region a regional request goes to, and why. `region_from.query` names a region only when
 * every copy the app could read agrees: the query's own copies, those PHP and Rack 2 file under
 * its name, and a form body's field of that name, which PHP's `$_REQUEST`, Laravel's `input()`,
 * Rails' and Rack's `params` read over the query's.
 */
export async function chooseRegion(
  rule: RegionalRule,
  ctx: Pick<RouteContext, "config" | "match" | "searchParams" | "pin" | "assumed" | "body"> & {
    method: string;
    headers: { get(name: string): string | null };
  },
): Promise<{ region: string; reason: string }> {
  if (rule.regionFrom) {
    let wanted: string | undefined;
    if ("pathGroup" in rule.regionFrom) {
      wanted = ctx.match.pathMatch?.groups?.[rule.regionFrom.pathGroup];
    } else {
      const name = rule.regionFrom.query;
      wanted = onlyValue(valuesAsAppsRead(ctx.searchParams, name));
      if (wanted !== undefined) {
        const copies = await bodyCopies(ctx, name);
        if (!copies || copies.some((value) => value !== wanted)) wanted = undefined;
      }
    }
    const region = wanted?.toLowerCase();
    if (region && ctx.config.regions.has(region)) return { region, reason: "region_from" };
  }
  return pinnedOrAssumed(ctx);
}

/** The region of a rule without `region_from` (or one the request names none for). */
export function pinnedOrAssumed(
  ctx: Pick<RouteContext, "pin" | "assumed">,
): { region: string; reason: string } {
  if (ctx.pin) return { region: ctx.pin.region, reason: ctx.pin.source };
  return { region: ctx.assumed.region, reason: ctx.assumed.reason };
}

/**
 * The values a request body gives parameter `name` as apps read it beside the query (PHP's
 * `$_REQUEST`, Laravel's `input()`, Rails' and Rack's `params` prefer the body's): a urlencoded
 * form, which Rack also assumes for a POST without a Content-Type; a multipart form; a JSON
 * object's top-level keys. Copies PHP and Rack file under the name count. `undefined` when the
 * body says something the edge cannot read as they do (a non-UTF-8 charset, a form too odd to
 * parse alike, JSON that does not parse, or a declared length over the body limit, which is not
 * read, so the body still streams): then the request names no region. A chunked body over the
 * limit is 413 `body_too_large`, as for a body matcher.
 */
export async function bodyCopies(
  ctx: Pick<RouteContext, "body" | "config"> & {
    method: string;
    headers: { get(name: string): string | null };
  },
  name: string,
): Promise<string[] | undefined> {
  const { headers } = ctx;
  // GET and HEAD carry none (the router refuses a body on them before this).
  if (ctx.method === "GET" || ctx.method === "HEAD") return [];
  // Express inflates a gzip body before it reads one: its raw bytes are not what the app reads.
  if (ctx.body.encoded) return undefined;
  const length = headers.get("content-length");
  if (length !== null && Number(length) > ctx.config.bodyLimitBytes) return undefined;
  const type = ctx.body.contentType;
  const readings = ctx.body.readings;
  if (readings === undefined) return undefined;
  const { media, form, multipart, json } = readings;
  if (multipart) {
    // Rack also parses multipart/mixed and /related; only form-data reads alike here.
    if (media !== "multipart/form-data") return undefined;
    const fields = await ctx.body.form();
    return fields && fieldValuesAsAppsRead(fields, name);
  }
  if (form) {
    if (!declaresUtf8(type ?? "")) return undefined;
    const params = urlencodedParams(await ctx.body.bytes());
    return params && valuesAsAppsRead(params, name);
  }
  if (json) {
    // No body is no parameters (Rails reads {}, Laravel an empty bag): SPA clients send this
    // Content-Type on every request.
    if ((await ctx.body.bytes()).length === 0) return [];
    const parsed = await ctx.body.json();
    if (parsed === undefined) return undefined;
    return jsonCopies(parsed, name);
  }
  return []; // a body apps do not read parameters from
}

/** The values a parsed JSON body gives parameter `name`: its top-level keys filed under it. */
export function jsonCopies(parsed: unknown, name: string): string[] {
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return [];
  return Object.entries(parsed).flatMap(([key, value]) =>
    filedUnder(key, name)
      ? (Array.isArray(value) ? value : [value]).map((v) =>
        typeof v === "string" ? v : JSON.stringify(v)
      )
      : []
  );
}

/**
 * The parameter's value when every copy of it agrees: `?region=au&region=us` names no region,
 * since the app behind may read either one.
 */
function onlyValue(values: string[]): string | undefined {
  return values.every((value) => value === values[0]) ? values[0] : undefined;
}

/**
 * A browser pinned to `region` gets all its cookies forwarded (that region owns its session); a
 * request for any other region gets only the `forward_cookies` whitelist, so one region's
 * session cookie never reaches another region.
 */
export function regionalCookies(
  region: string,
  pin: RegionPin | undefined,
  config: Config,
): CookiePolicy {
  return pin?.region === region ? { all: true } : { only: config.forwardCookies };
}
