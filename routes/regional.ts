/** @module `regional` rules: one region, chosen by the request, the pin, or an assumption. */
import type { RegionalRule } from "../lib/compile_rules.ts";
import { pinCookie } from "../lib/pin.ts";
import { forwardTo, type RouteContext, withSetCookie } from "../lib/route_context.ts";
import { checkSuccess } from "../lib/success.ts";

/** The region a regional request goes to, and why. */
export function chooseRegion(
  rule: RegionalRule,
  ctx: Pick<RouteContext, "config" | "match" | "searchParams" | "pin" | "assumed">,
): { region: string; reason: string } {
  if (rule.regionFrom) {
    const wanted = "pathGroup" in rule.regionFrom
      ? ctx.match.pathMatch?.groups?.[rule.regionFrom.pathGroup]
      : ctx.searchParams.get(rule.regionFrom.query) ?? undefined;
    const region = wanted?.toLowerCase();
    if (region && ctx.config.regions.has(region)) return { region, reason: "region_from" };
  }
  if (ctx.pin) return { region: ctx.pin.region, reason: ctx.pin.source };
  return { region: ctx.assumed.region, reason: ctx.assumed.reason };
}

/**
 * A pinned browser gets all its cookies forwarded (its region owns its session); a request for
 * any other region gets only the `forward_cookies` whitelist, so one region's session cookie
 * never reaches another region. An assumed region is never pinned.
 */
export async function handleRegional(rule: RegionalRule, ctx: RouteContext): Promise<Response> {
  const { region, reason } = chooseRegion(rule, ctx);
  ctx.log.region = region;
  ctx.log.regionReason = reason;
  const upstream = ctx.config.regions.get(region)!;
  const pinnedHere = ctx.pin?.region === region;
  const response = await forwardTo(
    ctx,
    upstream,
    pinnedHere ? { all: true } : { only: ctx.config.forwardCookies },
  );
  if (!rule.pinOn) return response;
  const verdict = await checkSuccess(rule.pinOn, response, {
    now: ctx.now(),
    bodyLimit: ctx.config.bodyLimitBytes,
  });
  if (!verdict.success) return verdict.response;
  ctx.log.outcome = "pinned";
  return withSetCookie(verdict.response, pinCookie(region, ctx.config));
}
