/** Large bodies stream through a regional route in both directions without being buffered. */
import assert from "node:assert/strict";
import { startUpstream } from "./_servers.ts";
import { startEntry } from "./_shutdown.ts";

const SIZE = 128 * 1024 * 1024; // ≥ 50 MiB, as the issue asks; large enough that buffering shows
const CHUNK = new Uint8Array(64 * 1024).fill(120);

function generated(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) return controller.close();
      controller.enqueue(CHUNK);
      sent += CHUNK.byteLength;
    },
  });
}

async function count(stream: ReadableStream<Uint8Array> | null): Promise<number> {
  let total = 0;
  for await (const chunk of stream ?? []) total += chunk.byteLength;
  return total;
}

/** The process's peak resident set so far (Linux VmHWM), in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
}

Deno.test("regional route streams a 128 MiB download and upload with RSS growth far below the body size", async () => {
  let uploaded = 0;
  const upstream = startUpstream(async (req) => {
    if (req.method === "POST") {
      uploaded = await count(req.body);
      return new Response(String(uploaded));
    }
    return new Response(generated(SIZE), {
      headers: { "content-type": "application/octet-stream" },
    });
  }, { recordBody: false });
  // vestibule in a process of its own, as it runs: measured in this one, the test's own client
  // and origin (and, run alone, the allocator's start) moved the figure by up to 90 MiB.
  const edge = await startEntry("deno run main.ts", upstream.url);
  try {
    // Warm up both ways so allocator and JIT growth is not counted as buffering.
    await count((await fetch(`${edge.base}/warm`)).body);
    const warm = await fetch(`${edge.base}/warm`, {
      method: "POST",
      body: generated(4 * CHUNK.byteLength),
    });
    await warm.text();
    const before = await peakRss(edge.child.pid);
    const down = await fetch(`${edge.base}/big`);
    assert.equal(await count(down.body), SIZE);
    const up = await fetch(`${edge.base}/upload`, {
      method: "POST",
      body: generated(SIZE),
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(await up.text(), String(SIZE));
    assert.equal(uploaded, SIZE);
    const growth = await peakRss(edge.child.pid) - before;
    // A relay that buffered either body would grow by at least its 128 MiB.
    assert.ok(
      growth < SIZE / 2,
      `vestibule's peak RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB for a 128 MiB body`,
    );
  } finally {
    await Promise.all([edge.close(), upstream.close()]);
  }
});
