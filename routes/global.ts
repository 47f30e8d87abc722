/** @module `global` rules: proxy to a non-regional upstream, or answer with a redirect. */
import type { GlobalRule } from "../lib/compile_rules.ts";
import { redirectLocation } from "../lib/redirect_location.ts";
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
  return await forwardTo(ctx, action.upstream, { only: rule.forwardCookies }, rule.timeoutMs);
}
