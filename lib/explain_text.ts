/** @module Renders an {@linkcode Explanation} as text for a person at a terminal. */
import type { Explanation, Target } from "./explain.ts";
import type { ForwardPlan, Stripped } from "./forward_plan.ts";
import { asTypedText } from "./wire_text.ts";

/** The human-readable form of an explanation, one fact per line, ending with a newline. */
export function formatExplanation(e: Explanation): string {
  const lines = [`${e.method} ${e.url}`];
  lines.push(`Rules tried before: ${e.tried.length > 0 ? e.tried.join(", ") : "(none)"}`);
  // A rule that matched is named also when the router then refuses the request (a redirect
  // its groups would move off its host, a body over the limit): that rule is what to fix.
  if (e.rule !== undefined) lines.push(`Rule: ${e.rule} (${e.type}, rules[${e.index}])`);
  if (e.servedBy) {
    lines.push(`Not routed: ${e.servedBy === "ocap" ? "OCAP" : "vestibule itself"} answers`);
  } else if (e.refused) {
    lines.push(
      `No upstream: vestibule answers ${e.refused.status} ${e.refused.code}: ${e.refused.message}`,
    );
  } else {
    if (e.location !== undefined) lines.push(`Redirect: ${e.status} to ${e.location}`);
    if (e.upstream !== undefined) lines.push(`Upstream: ${e.upstream}`);
    if (e.region !== undefined) {
      const country = e.country ? `, country ${e.country}` : "";
      lines.push(`Region: ${e.region} (${e.reason}${country})`);
    }
    if (e.regions) lines.push(`Regions: ${e.regions.join(", ")} (broadcast to all regions)`);
  }
  const shared = sharedPlan(e.targets);
  for (const target of e.targets) {
    lines.push(`Sends to: ${target.kind} "${target.id}" at ${target.origin}`);
    if (target.forward.headers.fromRules.length > 0) {
      lines.push(`  headers from the rules file: ${target.forward.headers.fromRules.join(", ")}`);
    }
    if (!shared) lines.push(...planLines(target.forward, "  "));
  }
  if (shared) {
    if (e.targets.length > 1) lines.push("Each region receives:");
    lines.push(...planLines(shared, e.targets.length > 1 ? "  " : ""));
  }
  if (e.notes.length > 0) lines.push("Notes:", ...e.notes.map((n) => `  - ${n}`));
  return lines.join("\n") + "\n";
}

/** The plan every target shares apart from its rules-file headers, or `undefined` if they differ. */
function sharedPlan(targets: Target[]): ForwardPlan | undefined {
  if (targets.length === 0) return undefined;
  const key = (p: ForwardPlan) =>
    JSON.stringify({ ...p, headers: { ...p.headers, fromRules: [] } });
  const first = key(targets[0].forward);
  return targets.every((t) => key(t.forward) === first) ? targets[0].forward : undefined;
}

function planLines(plan: ForwardPlan, indent: string): string[] {
  const list = (names: string[]) => names.length > 0 ? names.map(asTypedText).join(", ") : "(none)";
  const stripped = (items: Stripped[]) =>
    items.length > 0
      ? items.map((s) => `${asTypedText(s.name)} (${s.reason})`).join(", ")
      : "(none)";
  const set = Object.entries(plan.headers.set).map(([name, value]) => `${name}: ${value}`);
  return [
    `${indent}Cookies forwarded: ${list(plan.cookies.forwarded)}`,
    `${indent}Cookies stripped: ${stripped(plan.cookies.stripped)}`,
    `${indent}Headers forwarded: ${list(plan.headers.forwarded)}`,
    `${indent}Headers set by vestibule:`,
    ...set.map((line) => `${indent}  ${line}`),
    `${indent}Headers stripped: ${stripped(plan.headers.stripped)}`,
  ];
}
