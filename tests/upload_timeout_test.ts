/**
 * @module A streamed upload and the upstream's `timeout_ms`: the timeout is for silence, not for
 * the length of the upload (nginx's `proxy_send_timeout` runs between two writes too).
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

const TIMEOUT_MS = 300;

/** A body that sends `chunks` chunks of `size` bytes, `gapMs` apart. */
function tricklingBody(chunks: number, size: number, gapMs: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    async pull(controller) {
      if (sent > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
      controller.enqueue(new Uint8Array(size).fill(97));
      if (++sent === chunks) controller.close();
    },
  }, { highWaterMark: 0 });
}

function rules(origin: string) {
  return {
    regions: { us: { origin, timeout_ms: TIMEOUT_MS } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  };
}

const post = (url: string, body: ReadableStream<Uint8Array>, signal?: AbortSignal) =>
  fetch(url, {
    method: "POST",
    body,
    headers: { accept: "application/json" },
    signal,
    duplex: "half",
  } as RequestInit);

Deno.test("slow upload: a body still flowing after timeout_ms reaches the upstream whole, not 504", async () => {
  const up = startUpstream((_req, received) => Response.json({ bytes: received.body.length }));
  const edge = startVestibule(rules(up.url));
  try {
    // 8 chunks 100 ms apart: the upload takes over twice the timeout.
    const res = await post(`${edge.url}/upload`, tricklingBody(8, 1000, 100));
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { bytes: 8000 });
    assert.equal(up.received.length, 1);
    assert.equal(up.received[0].body.length, 8000);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("stalled upload: a client that stops sending gets 408 body_timeout and the upstream call is cancelled", async () => {
  const upstreamGaveUp = Promise.withResolvers<string>();
  const up = startUpstream(async (req) => {
    const reader = req.body!.getReader();
    // Should the call never be cancelled, the test fails here instead of hanging.
    const timer = setTimeout(() => reader.cancel(), 3000);
    try {
      while (!(await reader.read()).done);
      upstreamGaveUp.resolve("body complete");
    } catch (error) {
      upstreamGaveUp.resolve(`body broke: ${(error as Error).name}`);
    } finally {
      clearTimeout(timer);
    }
    return new Response("never seen");
  }, { recordBody: false });
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule(rules(up.url), {
    deps: { log: (line) => lines.push(JSON.parse(line)) },
  });
  const client = new AbortController();
  const guard = setTimeout(() => client.abort(), 5000); // A wrong build fails, not hangs.
  try {
    let stall: () => void = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(100));
        // Then nothing, until the test ends.
        stall = () => controller.close();
      },
    });
    const started = performance.now();
    const res = await post(`${edge.url}/upload`, body, client.signal);
    const elapsed = performance.now() - started;
    assert.equal(res.status, 408);
    assert.equal((await res.json()).error, "body_timeout");
    assert.ok(elapsed >= TIMEOUT_MS - 10 && elapsed < TIMEOUT_MS + 400, `after ${elapsed} ms`);
    assert.match(await upstreamGaveUp.promise, /^body broke/);
    assert.equal(lines.at(-1)!.error, "body_timeout");
    stall();
  } finally {
    clearTimeout(guard);
    client.abort();
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("hanging after the upload: the timeout counts from the body's last byte (504 upstream_timeout)", async () => {
  const release = Promise.withResolvers<void>();
  const up = startUpstream(async () => {
    await release.promise;
    return new Response("late");
  });
  const edge = startVestibule(rules(up.url));
  try {
    const started = performance.now();
    // 4 chunks 100 ms apart: the body ends after about 300 ms, then the upstream is silent.
    const res = await post(`${edge.url}/upload`, tricklingBody(4, 1000, 100));
    const elapsed = performance.now() - started;
    assert.equal(res.status, 504);
    assert.equal((await res.json()).error, "upstream_timeout");
    assert.ok(elapsed >= 300 + TIMEOUT_MS - 20, `after ${elapsed} ms: counted from the start`);
    assert.ok(elapsed < 300 + TIMEOUT_MS + 500, `after ${elapsed} ms`);
    assert.equal(up.received[0].body.length, 4000);
  } finally {
    release.resolve();
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("upstream that stops reading: an endless upload it never takes gets 504 upstream_timeout, not 408", async () => {
  const release = Promise.withResolvers<void>();
  const up = startUpstream(async () => {
    await release.promise; // never reads the body
    return new Response("late");
  }, { recordBody: false });
  const edge = startVestibule(rules(up.url));
  const client = new AbortController();
  const guard = setTimeout(() => client.abort(), 5000); // A wrong build fails, not hangs.
  try {
    // Ready at once whenever asked: only the upstream's full buffers can stop it.
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(64 * 1024));
      },
    }, { highWaterMark: 0 });
    const started = performance.now();
    const res = await post(`${edge.url}/upload`, endless, client.signal);
    const elapsed = performance.now() - started;
    assert.equal(res.status, 504);
    assert.equal((await res.json()).error, "upstream_timeout");
    assert.ok(elapsed < TIMEOUT_MS + 1000, `after ${elapsed} ms`);
  } finally {
    clearTimeout(guard);
    client.abort();
    release.resolve();
    await Promise.all([edge.close(), up.close()]);
  }
});
