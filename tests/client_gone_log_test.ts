/**
 * Hazard: a client that hangs up before an answer that comes within CLIENT_WATCH_AFTER_MS (1 s)
 * is logged and counted as the upstream's 200, with the body bytes it never got. The docs
 * (README error list, docs/observability.md) say such a request is 499 `client_closed`; an
 * operator counting abandoned slow pages, as nginx's 499 shows them, sees none. Over HTTP/2,
 * Deno.serve aborts a request's signal only if the signal existed before the client left.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { oneRegion, startUpstream, startVestibule } from "./_servers.ts";
import { h2AbandonUpload } from "./_http2.ts";

const TOKEN = "scrape-token-0123456789";

/**
 * An edge before a slow page: `leave()` is called once the upstream has the request, the page is
 * answered after it (within 1 s), and the one log line comes back.
 */
async function abandonSlowPage(
  leave: (edgeUrl: string, arrived: Promise<void>) => Promise<void>,
): Promise<{ line: Record<string, unknown>; scrape: string }> {
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
    await leave(edge.url, arrived.promise);
    // Time for Deno.serve to see the client go before the upstream answers (a few ms).
    await new Promise((resolve) => setTimeout(resolve, 200));
    release.resolve();
    for (let i = 0; i < 100 && lines.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(lines.length, 1);
    const scrape = await (await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })).text();
    return { line: lines[0], scrape };
  } finally {
    release.resolve();
    await Promise.all([edge.close(), up.close()]);
  }
}

function assertClientClosed({ line, scrape }: { line: Record<string, unknown>; scrape: string }) {
  assert.deepEqual(
    { status: line.status, error: line.error },
    { status: 499, error: "client_closed" },
  );
  assert.doesNotMatch(scrape, /status_class="2xx"/, "counted as a 2xx the client never got");
}

Deno.test("client gone: a client that hangs up before a sub-second answer is logged and counted as 499, not the upstream's 200", async () => {
  assertClientClosed(
    await abandonSlowPage(async (url, arrived) => {
      const client = new AbortController();
      const pending = fetch(`${url}/report`, { signal: client.signal }).catch((e) => e);
      await arrived;
      client.abort();
      assert.ok((await pending) instanceof DOMException, "the client got no answer");
    }),
  );
});

Deno.test("client gone over HTTP/2: a client that resets its stream or closes the connection before a slow answer is logged 499", async (t) => {
  const ways = {
    "RST_STREAM": (s: http2.ClientHttp2Stream) => s.close(http2.constants.NGHTTP2_CANCEL),
    "connection closed": (s: http2.ClientHttp2Stream) => s.session!.destroy(),
  };
  for (const [way, leave] of Object.entries(ways)) {
    await t.step(way, async () => {
      let session: http2.ClientHttp2Session | undefined;
      try {
        assertClientClosed(
          await abandonSlowPage(async (url, arrived) => {
            session = http2.connect(url);
            session.on("error", () => {});
            const stream = session.request({ ":path": "/report" });
            stream.on("error", () => {});
            await arrived;
            leave(stream);
          }),
        );
      } finally {
        session?.destroy();
      }
    });
  }
});

Deno.test("client gone over HTTP/2 mid-upload: a client that resets or leaves during a Content-Length upload is logged 499, not the region's 502", async (t) => {
  // Deno.serve ends the cut body cleanly (hyperium/hyper#3681) and `fetch` fails with `early end,
  // expected N more bytes`: the region was blamed (upstream_unavailable, upstream errors metric).
  for (const leave of ["RST_STREAM", "connection closed"] as const) {
    await t.step(leave, async () => {
      const up = startUpstream();
      const lines: Record<string, unknown>[] = [];
      const edge = startVestibule(oneRegion(up.url), {
        deps: { log: (line) => lines.push(JSON.parse(line)), metricsToken: TOKEN },
      });
      try {
        await h2AbandonUpload(edge.url, leave, { ":path": "/upload", "content-length": "100000" });
        for (let i = 0; i < 100 && lines.length === 0; i++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const scrape = await (await fetch(`${edge.url}/_vestibule/metrics`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        })).text();
        assert.deepEqual(
          { status: lines[0]?.status, error: lines[0]?.error },
          { status: 499, error: "client_closed" },
        );
        assert.doesNotMatch(scrape, /^vestibule_upstream_errors_total\{upstream="us"/m);
        assert.deepEqual(up.received, [], "the origin got the cut upload");
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
});
