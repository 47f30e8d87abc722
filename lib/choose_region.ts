/** @module Which region a `regional` rule sends a request to, and why. */
import type { Config, RegionalRule } from "./compile_rules.ts";
import type { CookiePolicy } from "./forward.ts";
import type { RegionPin } from "./pin.ts";
import type { RouteContext } from "./route_context.ts";

/** The region a regional request goes to, and why. */
export function chooseRegion(
  rule: RegionalRule,
  ctx: Pick<RouteContext, "config" | "match" | "searchParams" | "pin" | "assumed">,
): { region: string; reason: string } {
  if (rule.regionFrom) {
    const wanted = "pathGroup" in rule.regionFrom
      ? ctx.match.pathMatch?.groups?.[rule.regionFrom.pathGroup]
      : onlyValue(ctx.searchParams.getAll(rule.regionFrom.query));
    const region = wanted?.toLowerCase();
    if (region && ctx.config.regions.has(region)) return { region, reason: "region_from" };
  }
  if (ctx.pin) return { region: ctx.pin.region, reason: ctx.pin.source };
  return { region: ctx.assumed.region, reason: ctx.assumed.reason };
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
