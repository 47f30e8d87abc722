/** @module Deno.bench: rule matching cost at 40 and 1,000 rules (the target is ≤ 2 µs at 40). */
import { findRule, matchWithoutBody, type RequestFacts } from "../lib/match_rule.ts";
import { parseRules } from "../lib/load_rules.ts";
import { BufferedBody } from "../lib/request_body.ts";

function table(count: number) {
  const rules: unknown[] = [];
  for (let i = 0; i < count - 1; i++) {
    rules.push({
      name: `r${i}`,
      type: i % 3 === 0 ? "global" : "regional",
      match: { methods: ["GET", "POST"], path: `^/section-${i}/(?<rest>.*)$` },
      ...(i % 3 === 0 ? { upstream: "website" } : {}),
    });
  }
  rules.push({ name: "app", type: "regional" });
  return parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.test" }, us: { origin: "http://us.test" } },
      upstreams: { website: { origin: "http://web.test" } },
      default_region: "us",
      rules,
    }),
    { env: () => undefined },
  );
}

function facts(path: string): RequestFacts {
  const url = new URL(`http://app.test${path}`);
  return {
    method: "GET",
    hostname: "app.test",
    path: url.pathname,
    searchParams: url.searchParams,
    headers: new Headers(),
  };
}

for (const count of [40, 1000]) {
  const config = table(count);
  const last = facts("/dashboard/overview"); // falls through every rule to the catch-all
  const middle = facts(`/section-${Math.floor(count / 2)}/x`);
  const request = new Request("http://app.test/");
  Deno.bench(`match ${count} rules: worst case (catch-all after all)`, {
    group: `rules-${count}`,
    baseline: true,
  }, () => {
    for (const rule of config.rules) if (matchWithoutBody(rule.match, last) !== false) return;
  });
  Deno.bench(`match ${count} rules: hit in the middle`, { group: `rules-${count}` }, () => {
    for (const rule of config.rules) if (matchWithoutBody(rule.match, middle) !== false) return;
  });
  Deno.bench(
    `findRule() ${count} rules: worst case, async API`,
    { group: `rules-${count}` },
    async () => {
      await findRule(config.rules, last, new BufferedBody(request, 1024));
    },
  );
}
