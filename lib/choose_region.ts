/** @module Which region a `regional` rule sends a request to, and why. */
import type { Config, RegionalRule } from "./compile_rules.ts";
import type { CookiePolicy } from "./forward.ts";
import type { RegionPin } from "./pin.ts";
import type { RouteContext } from "./route_context.ts";
import { valuesAsAppsRead } from "./app_names.ts";

/**
 * The region a regional request goes to, and why. `region_from.query` names a region only when
 * every copy the app could read agrees: the query's own copies, those PHP and Rack 2 file under
 * its name, and a form body's field of that name, which PHP's `$_REQUEST`, Laravel's `input()`,
 * Rails' and Rack's `params` read over the query's.
 */
export async function chooseRegion(
  rule: RegionalRule,
  ctx: Pick<RouteContext, "config" | "match" | "searchParams" | "pin" | "assumed" | "body"> & {
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
      if (wanted !== undefined && FORM.test(ctx.headers.get("content-type") ?? "")) {
        // A form the matchers cannot read the same way as every app names no region either.
        const fields = await ctx.body.form();
        const copies = fields?.get(name);
        if (!fields || copies?.some((value) => value !== wanted)) wanted = undefined;
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

/** A form body, which frameworks read parameters from beside the query. */
const FORM = /^\s*(?:application\/x-www-form-urlencoded|multipart\/form-data)\b/i;

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
