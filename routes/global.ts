/** @module `global` rules: proxy to a non-regional upstream, or answer with a redirect. */
import type { GlobalRule } from "../lib/compile_rules.ts";
import { forwardTo, type RouteContext } from "../lib/route_context.ts";

/** Handles a request matched by a `global` rule. */
export async function handleGlobal(rule: GlobalRule, ctx: RouteContext): Promise<Response> {
  const { action } = rule;
  if (action.kind === "redirect") {
    ctx.log.outcome = "redirect";
    return new Response(null, {
      status: action.status,
      headers: { location: redirectLocation(action.location, ctx) },
    });
  }
  ctx.log.upstream = action.upstream.id;
  return await forwardTo(ctx, action.upstream, { only: rule.forwardCookies });
}

/**
 * Substitutes `$1`… with the path regex groups and keeps the query string unless the target
 * has its own, so `/help/x?lang=fr` lands on the same page of the new site.
 */
export function redirectLocation(
  template: string,
  ctx: Pick<RouteContext, "match" | "searchParams">,
): string {
  const groups = ctx.match.pathMatch;
  const location = template.replace(/\$(\d)/g, (_, n: string) => groups?.[Number(n)] ?? "");
  const query = ctx.searchParams.size > 0 ? `?${ctx.searchParams}` : "";
  return location.includes("?") ? location : location + query;
}
