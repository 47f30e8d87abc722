/**
 * Hazard: a client that hangs up before an answer that comes within CLIENT_WATCH_AFTER_MS (1 s)
 * is logged and counted as the upstream's 200, with the body bytes it never got. The docs
 * (README error list, docs/observability.md) say such a request is 499 `client_closed`; an
 * operator counting abandoned slow pages, as nginx's 499 shows them, sees none.
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

const TOKEN = "scrape-token-0123456789";

Deno.test("client gone: a client that hangs up before a sub-second answer is logged and counted as 499, not the upstream's 200", async () => {
  const arrived = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const up = startUpstream(async () => {
    arrived.resolve();
    await release.promise; // a slow page: the answer comes after the client left, within 1 s
    return new Response("slow page");
  });
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)), metricsToken: TOKEN } });
  try {
    const client = new AbortController();
    const pending = fetch(`${edge.url}/report`, { signal: client.signal }).catch((e) => e);
    await arrived.promise;
    client.abort();
    assert.ok((await pending) instanceof DOMException, "the client got no answer");
    // Time for Deno.serve to read the client's FIN before the upstream answers (a few ms).
    await new Promise((resolve) => setTimeout(resolve, 200));
    release.resolve();
    for (let i = 0; i < 100 && lines.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(lines.length, 1);
    assert.deepEqual(
      { status: lines[0].status, error: lines[0].error },
      { status: 499, error: "client_closed" },
    );
    const scrape = await (await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })).text();
    assert.doesNotMatch(scrape, /status_class="2xx"/, "counted as a 2xx the client never got");
  } finally {
    release.resolve();
    await Promise.all([edge.close(), up.close()]);
  }
});
