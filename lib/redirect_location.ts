/** @module Where a `global` redirect rule sends the client. */
import type { RouteContext } from "./route_context.ts";

/**
 * Substitutes `$1`… with the path regex groups and keeps the query string unless the target
 * has its own, so `/help/x?lang=fr` lands on the same page of the new site.
 */
export function redirectLocation(
  template: string,
  ctx: Pick<RouteContext, "match" | "pathAndQuery">,
): string {
  const groups = ctx.match.pathMatch;
  const location = template.replace(/\$(\d)/g, (_, n: string) => groups?.[Number(n)] ?? "");
  // The query exactly as the client sent it: re-serializing would re-encode it.
  const at = ctx.pathAndQuery.indexOf("?");
  const query = at === -1 ? "" : ctx.pathAndQuery.slice(at);
  return location.includes("?") ? location : location + query;
}
