/**
 * Success rules that read the answer's body (`json`), on broadcast and `pin_on`: compressed
 * bodies, bodies over `body_limit_bytes`, and bodies that stall halfway.
 */
import assert from "node:assert/strict";
import { deflateRawSync, deflateSync, gzipSync, zstdCompressSync } from "node:zlib";
import { startUpstream, startVestibule, type TestServer } from "./_servers.ts";

const PIN = "__Host-vestibule-region";

/** A JSON answer that sends its first bytes and then nothing; `release()` ends them. */
function stallingAnswers() {
  const stalled: ReadableStreamDefaultController<Uint8Array>[] = [];
  return {
    respond: () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode('{"errors":'));
            stalled.push(controller);
          },
        }),
        { headers: { "content-type": "application/json" } },
      ),
    release() {
      for (const controller of stalled) {
        try {
          controller.close();
        } catch { /* vestibule cancelled it already */ }
      }
    },
  };
}

/** A GraphQL-ish signup that succeeds on 2xx with an empty `errors` list. */
const SIGNUP = {
  name: "signup",
  type: "broadcast",
  success: { status: "2xx", json: { path: "errors", equals: [] } },
};

/** POSTs a signup through `edge`, accepting the codings in `accept`. */
const signup = (edge: TestServer, accept: string) =>
  fetch(`${edge.url}/graphql`, {
    method: "POST",
    body: "{}",
    headers: { "accept-encoding": accept },
  });

Deno.test("broadcast: a JSON success rule reads a body the origin compressed for a browser", async (t) => {
  const body = JSON.stringify({ data: { ok: true }, errors: [] });
  const text = new TextEncoder().encode(body);
  // Deno's fetch decodes gzip (vestibule re-compresses it) but passes deflate and zstd through as
  // they are; browsers take deflate zlib-wrapped or raw.
  const cases: [step: string, coding: string, bytes: Uint8Array][] = [
    ["gzip", "gzip", gzipSync(text)],
    ["deflate", "deflate", deflateSync(text)],
    ["raw deflate", "deflate", deflateRawSync(text)],
    ["zstd", "zstd", zstdCompressSync(text)],
  ];
  const accept = "gzip, deflate, br, zstd"; // what Chrome and Firefox send
  for (const [step, coding, bytes] of cases) {
    await t.step(step, async () => {
      const au = startUpstream(() =>
        new Response("<p>no such user</p>", { headers: { "content-type": "text/html" } })
      );
      const us = startUpstream((req) =>
        (req.headers.get("accept-encoding") ?? "").includes(coding)
          ? new Response(new Uint8Array(bytes), {
            headers: { "content-type": "application/json", "content-encoding": coding },
          })
          : Response.json(JSON.parse(body))
      );
      const edge = startVestibule({
        regions: { au: { origin: au.url }, us: { origin: us.url } },
        default_region: "au",
        rules: [SIGNUP],
      });
      try {
        const res = await signup(edge, accept);
        assert.equal(us.received[0].headers.get("accept-encoding"), accept);
        // This test's client (Deno's fetch) decodes gzip only: the rest is checked byte for byte.
        const got = new Uint8Array(await res.arrayBuffer());
        if (coding === "gzip") {
          assert.deepEqual(JSON.parse(new TextDecoder().decode(got)), JSON.parse(body));
        } else assert.deepEqual(got, new Uint8Array(bytes));
        assert.match(res.headers.getSetCookie().join("\n"), new RegExp(`${PIN}=us`));
      } finally {
        await Promise.all([edge.close(), au.close(), us.close()]);
      }
    });
  }
});

Deno.test("zip bomb: a zstd answer that inflates past body_limit_bytes is no success and reaches the client as sent", async () => {
  const bomb = zstdCompressSync(
    new TextEncoder().encode(`{"errors":[],"pad":"${"x".repeat(8 * 1024 * 1024)}"}`),
  );
  const us = startUpstream(() =>
    new Response(new Uint8Array(bomb), {
      headers: { "content-type": "application/json", "content-encoding": "zstd" },
    })
  );
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    body_limit_bytes: 65_536,
    rules: [SIGNUP],
  });
  try {
    const res = await signup(edge, "zstd");
    assert.equal(res.status, 200);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), new Uint8Array(bomb));
    assert.deepEqual(res.headers.getSetCookie(), [], "not judged a success: no pin");
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("pin_on: an answer over body_limit_bytes is no success and reaches the client whole", async (t) => {
  const big = JSON.stringify({ ok: true, pad: "x".repeat(2 * 1024 * 1024) });
  const up = startUpstream((req) =>
    new URL(req.url).pathname.endsWith("/streamed")
      // No Content-Length: the limit is found while reading.
      ? new Response(new Blob([big]).stream(), { headers: { "content-type": "application/json" } })
      : new Response(big, { headers: { "content-type": "application/json" } })
  );
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [{
      name: "switch",
      type: "regional",
      match: { path: "^/switch/(?<region>\\w+)(/streamed)?$" },
      region_from: { path_group: "region" },
      pin_on: { json: { path: "ok", equals: true } },
    }],
  });
  try {
    for (const path of ["/switch/us", "/switch/us/streamed"]) {
      await t.step(path, async () => {
        const res = await fetch(`${edge.url}${path}`, {
          headers: { "accept-encoding": "identity" },
        });
        assert.equal(res.status, 200);
        assert.equal(await res.text(), big);
        assert.deepEqual(res.headers.getSetCookie(), [], "too large to judge: no pin");
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("broadcast: a region that stalls mid-body times out and the other region answers", async () => {
  const stalling = stallingAnswers();
  const au = startUpstream(stalling.respond);
  const us = startUpstream(() => Response.json({ errors: [] }));
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{
      name: "signup",
      type: "broadcast",
      timeout_ms: 300,
      success: { status: "2xx", json: { path: "errors", equals: [] } },
    }],
  });
  const giveUp = AbortSignal.timeout(5000);
  try {
    const started = performance.now();
    const res = await fetch(`${edge.url}/graphql`, { method: "POST", body: "{}", signal: giveUp });
    const ms = performance.now() - started;
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { errors: [] });
    assert.match(res.headers.getSetCookie().join("\n"), new RegExp(`${PIN}=us`));
    assert.ok(ms >= 250 && ms < 2000, `answered after ${Math.round(ms)} ms, timeout_ms 300`);
  } finally {
    stalling.release();
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("pin_on: an answer that stalls mid-body is a 504 after the timeout that applies, not a hang", async (t) => {
  const stalling = stallingAnswers();
  const up = startUpstream(stalling.respond);
  const switchRule = (fields: Record<string, unknown>) => ({
    name: "switch",
    type: "regional",
    match: { path: "^/switch/(?<region>\\w+)$" },
    region_from: { path_group: "region" },
    pin_on: { json: { path: "errors", equals: [] } },
    ...fields,
  });
  const cases: Array<[string, number, Record<string, unknown>]> = [
    ["the region's timeout_ms", 300, {}],
    ["the rule's timeout_ms, shorter than the region's", 8000, { timeout_ms: 300 }],
  ];
  try {
    for (const [name, regionTimeout, ruleFields] of cases) {
      await t.step(name, async () => {
        const edge = startVestibule({
          regions: { us: { origin: up.url, timeout_ms: regionTimeout } },
          default_region: "us",
          rules: [switchRule(ruleFields)],
        });
        try {
          const started = performance.now();
          const res = await fetch(`${edge.url}/switch/us`, {
            headers: { accept: "application/json" },
            signal: AbortSignal.timeout(5000),
          });
          const ms = performance.now() - started;
          assert.equal(res.status, 504);
          assert.equal((await res.json()).error, "upstream_timeout");
          assert.deepEqual(res.headers.getSetCookie(), []);
          assert.ok(ms >= 250 && ms < 2000, `answered after ${Math.round(ms)} ms, timeout 300`);
        } finally {
          await edge.close();
        }
      });
    }
  } finally {
    stalling.release();
    await up.close();
  }
});

Deno.test("5xx inflation: pin_on with a client that hangs up while the json check waits on the answer's body is 499 and the region call is cancelled", async () => {
  let upstreamGone: number | undefined;
  const release = Promise.withResolvers<void>();
  const up = startUpstream(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(new TextEncoder().encode('{"errors":'));
          await release.promise;
          try {
            controller.close();
          } catch { /* cancelled already */ }
        },
        cancel() {
          upstreamGone ??= performance.now();
        },
      }),
      { headers: { "content-type": "application/json" } },
    )
  );
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { us: { origin: up.url, timeout_ms: 3000 } },
    default_region: "us",
    rules: [{
      name: "switch",
      type: "regional",
      match: { path: "^/switch/(?<region>\\w+)$" },
      region_from: { path_group: "region" },
      pin_on: { json: { path: "errors", equals: [] } },
    }],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)) } });
  try {
    const gone = new AbortController();
    const call = fetch(`${edge.url}/switch/us`, { signal: gone.signal }).catch(() => {});
    await new Promise((r) => setTimeout(r, 1200)); // past the 1 s client watch; headers are in
    const left = performance.now();
    gone.abort();
    await call;
    for (let i = 0; i < 400 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const logged = Math.round(performance.now() - left);
    assert.equal(lines.length, 1);
    assert.deepEqual(
      [lines[0].status, lines[0].error],
      [499, "client_closed"],
      `logged ${logged} ms after the client left`,
    );
    // The cancel reaches the region's server a few milliseconds after the log line is written.
    for (let i = 0; i < 100 && upstreamGone === undefined; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(upstreamGone !== undefined && upstreamGone - left < 1000, "region call cancelled");
  } finally {
    release.resolve();
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("broadcast: a region whose judged JSON body stalls costs timeout_ms, not twice it", async () => {
  // Headers and judged body together fit in timeout_ms (routes/broadcast.ts `deadline`); a
  // deadline of twice it passed every other test.
  const stalling = stallingAnswers();
  const au = startUpstream(stalling.respond);
  const us = startUpstream(() => Response.json({ errors: [] }));
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{ ...SIGNUP, timeout_ms: 500 }],
  });
  try {
    const started = performance.now();
    const res = await fetch(`${edge.url}/graphql`, {
      method: "POST",
      body: "{}",
      signal: AbortSignal.timeout(5000),
    });
    const ms = performance.now() - started;
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { errors: [] });
    assert.match(res.headers.getSetCookie().join("\n"), new RegExp(`${PIN}=us`));
    assert.ok(ms >= 480 && ms < 900, `answered after ${Math.round(ms)} ms, timeout_ms 500`);
  } finally {
    stalling.release();
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
