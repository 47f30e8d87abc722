/**
 * Hazard: docs/observability.md says `vestibule_upstream_errors_total` labels a call without a
 * usable answer `upstream_unavailable`, `upstream_timeout` or `upstream_invalid`, and that every
 * failing region of a broadcast counts. A broadcast region that answers, but with something no
 * client can be handed (a transfer coding other than chunked, a 101 nobody asked for), was counted
 * and logged as unreachable: the operator paged for "AU is down" looks at the network, while AU is
 * up and a proxy in front of it mangles its answers.
 */
import assert from "node:assert/strict";
import { rawUpstream, startUpstream, startVestibule } from "./_servers.ts";

const TOKEN = "scrape-token-0123456789";

Deno.test("metrics: a broadcast region whose answer is invalid counts as upstream_invalid, not unreachable", async () => {
  const au = rawUpstream(() =>
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n"
  );
  const us = startUpstream(() => new Response("no such user", { status: 401 }));
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "login", type: "broadcast", success: { status: [302] } }],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)), metricsToken: TOKEN } });
  try {
    const res = await fetch(`${edge.url}/login`, { method: "POST", body: "username=olivia" });
    await res.body?.cancel();
    assert.equal(res.status, 401);
    assert.deepEqual(
      (lines[0].regions as { region: string; error?: string }[]).map((r) => [r.region, r.error]),
      [["au", "invalid"], ["us", undefined]],
    );
    const scrape = await (await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })).text();
    assert.match(
      scrape,
      /^vestibule_upstream_errors_total\{upstream="au",error="upstream_invalid"\} 1$/m,
    );
    assert.doesNotMatch(
      scrape,
      /^vestibule_upstream_errors_total\{upstream="au",error="upstream_unavailable"/m,
    );
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
