/** @module `global` rules: proxy to a non-regional upstream, or answer with a redirect. */
import type { GlobalRule } from "../lib/compile_rules.ts";
import { redirectLocation } from "../lib/redirect_location.ts";
import { chosenByIn, withVary } from "../lib/region_vary.ts";
import { forwardTo, type RouteContext } from "../lib/route_context.ts";

/** Handles a request matched by a `global` rule. */
export async function handleGlobal(rule: GlobalRule, ctx: RouteContext): Promise<Response> {
  const { action } = rule;
  if (action.kind === "redirect") {
    ctx.log.outcome = "redirect";
    const headers = new Headers({ location: redirectLocation(action.location, ctx) });
    // Browsers and CDNs keep a 301 or 308 without being told (RFC 9111 §4.2.2), and CDNs 302s.
    const chosenBy = chosenByIn(rule.chosenBy, ctx.headers);
    if (chosenBy.length > 0) headers.set("vary", chosenBy.join(", "));
    return new Response(null, { status: action.status, headers });
  }
  ctx.log.upstream = action.upstream.id;
  const cookies = { only: rule.forwardCookies };
  const response = await forwardTo(ctx, action.upstream, cookies, rule.timeoutMs);
  return withVary(response, ctx.request.method, rule.chosenBy, ctx.headers);
}
