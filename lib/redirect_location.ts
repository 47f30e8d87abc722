/** @module Where a `global` redirect rule sends the client. */
import type { RouteContext } from "./route_context.ts";

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
