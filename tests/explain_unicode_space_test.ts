/**
 * Hazard: `deno task explain -H` trims a typed value with JavaScript's `trim()`, which also takes
 * U+00A0 and the other Unicode spaces, before sending it in UTF-8 as curl does. curl sends those
 * octets and the router keeps them, so a pin cookie behind a no-break space (the README's
 * sibling-subdomain cookie, "stripped but never read") is read by explain alone.
 */
import assert from "node:assert/strict";
import { rawRequest, startUpstream, startVestibule, twoRegions } from "./_servers.ts";
import { runExplain } from "./_cli.ts";
import type { Explanation } from "../lib/explain.ts";

async function explainJson(rules: unknown, header: string): Promise<Explanation> {
  const result = await runExplain(rules, [
    "GET",
    "http://app.example.com/dashboard",
    "--json",
    "-H",
    header,
  ]);
  assert.equal(result.stderr, "");
  return JSON.parse(result.stdout);
}

for (
  const [what, header] of [
    [
      "a pin cookie behind a no-break space",
      "Cookie: \u00a0__Host-vestibule-region=au; sessionid=s",
    ],
    ["a pin header value behind a no-break space", "X-Vestibule-Region: \u00a0au"],
    ["a pin header value behind an ideographic space", "X-Vestibule-Region: \u3000au"],
  ]
) {
  Deno.test(`explain -H: ${what} is read as the router reads curl's octets (sibling-subdomain pin)`, async () => {
    const au = startUpstream();
    const us = startUpstream();
    const rules = twoRegions(au.url, us.url);
    const lines: Record<string, unknown>[] = [];
    const edge = startVestibule(rules, { deps: { log: (l) => lines.push(JSON.parse(l)) } });
    try {
      // What curl sends for the same typed header: its text in UTF-8.
      await rawRequest(edge.port, [
        "GET /dashboard HTTP/1.1\r\nHost: app.example.com\r\n",
        new TextEncoder().encode(header),
        "\r\nConnection: close\r\n\r\n",
      ]);
      const e = await explainJson(rules, header);
      const target = e.targets[0];
      const server = target.id === "au" ? au : us;
      assert.deepEqual(
        { region: e.region, reason: e.reason, cookies: target.forward.cookies.forwarded },
        {
          region: lines[0].region,
          reason: lines[0].region_reason,
          cookies: (server.received[0]?.headers.get("cookie") ?? "").split("; ").filter(Boolean)
            .map((pair) => pair.split("=")[0]),
        },
      );
    } finally {
      await Promise.all([edge.close(), au.close(), us.close()]);
    }
  });
}
