/**
 * Hazard: docs/observability.md (Health) says the upstream latency histogram and the 5xx class of
 * `vestibule_requests_total` tell an operator whether the regions are reachable. A broadcast
 * region that is down, or times out, appears in neither: the request is counted under the region
 * that answered, and the histogram only counts answers. While AU is down every AU user's login
 * gets US's "no such user", and the scrape shows only successes and failures of `us`. A region
 * that answers with something no client can be handed (a transfer coding other than chunked) is
 * up, and counts as `upstream_invalid`, not as unreachable: the operator should look at what
 * mangles its answers, not at the network.
 */
import assert from "node:assert/strict";
import { DEAD_ORIGIN, rawUpstream, startUpstream, startVestibule } from "./_servers.ts";

const TOKEN = "scrape-token-0123456789";

/**
 * One login broadcast to `regions` beside a `us` that answers 401: each region's `error` in the
 * access line, and a scrape of the metrics after it.
 */
async function failedLogin(
  regions: Record<string, { origin: string; timeout_ms?: number }>,
): Promise<{ errors: Array<[string, string | undefined]>; scrape: string }> {
  const us = startUpstream(() => new Response("no such user", { status: 401 }));
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { ...regions, us: { origin: us.url } },
    default_region: "us",
    rules: [{
      name: "login",
      type: "broadcast",
      match: { methods: ["POST"], path: "^/login$" },
      success: { status: [302] },
    }],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)), metricsToken: TOKEN } });
  try {
    const res = await fetch(`${edge.url}/login`, { method: "POST", body: "username=olivia" });
    await res.body?.cancel();
    assert.equal(res.status, 401);
    const scrape = await (await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })).text();
    const regionsLogged = lines[0].regions as { region: string; error?: string }[];
    return { errors: regionsLogged.map((r) => [r.region, r.error]), scrape };
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
}

Deno.test("metrics: a broadcast region that cannot be reached or times out shows in the scrape", async (t) => {
  const release = Promise.withResolvers<void>();
  const slow = startUpstream(async () => {
    await release.promise;
    return new Response("late");
  });
  try {
    const { errors, scrape } = await failedLogin({
      au: { origin: DEAD_ORIGIN },
      nz: { origin: slow.url, timeout_ms: 100 },
    });
    // The log line says it…
    assert.deepEqual(errors, [["au", "unavailable"], ["nz", "timeout"], ["us", undefined]]);
    // …and so must the metrics an operator alerts on.
    for (const [region, error] of [["au", "upstream_unavailable"], ["nz", "upstream_timeout"]]) {
      await t.step(region, () => {
        assert.match(
          scrape,
          new RegExp(
            `^vestibule_upstream_errors_total\\{upstream="${region}",error="${error}"\\} 1$`,
            "m",
          ),
        );
      });
    }
    assert.doesNotMatch(scrape, /^vestibule_upstream_errors_total\{upstream="us"/m);
  } finally {
    release.resolve();
    await slow.close();
  }
});

Deno.test("metrics: a broadcast region whose answer is invalid counts as upstream_invalid, not unreachable", async () => {
  const au = rawUpstream(() =>
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n"
  );
  try {
    const { errors, scrape } = await failedLogin({ au: { origin: au.url } });
    assert.deepEqual(errors, [["au", "invalid"], ["us", undefined]]);
    assert.match(
      scrape,
      /^vestibule_upstream_errors_total\{upstream="au",error="upstream_invalid"\} 1$/m,
    );
    assert.doesNotMatch(
      scrape,
      /^vestibule_upstream_errors_total\{upstream="au",error="upstream_unavailable"/m,
    );
  } finally {
    await au.close();
  }
});
