/** Large bodies stream through a regional route in both directions without being buffered. */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

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
  const edge = startVestibule({
    regions: { us: { origin: upstream.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    // Warm up so allocator and JIT growth is not counted as buffering.
    await count((await fetch(`${edge.url}/warm`)).body);
    const rssBefore = Deno.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, Deno.memoryUsage().rss)), 20);
    try {
      const down = await fetch(`${edge.url}/big`);
      assert.equal(await count(down.body), SIZE);
      const up = await fetch(`${edge.url}/upload`, {
        method: "POST",
        body: generated(SIZE),
        headers: { "content-type": "application/octet-stream" },
      });
      assert.equal(await up.text(), String(SIZE));
      assert.equal(uploaded, SIZE);
    } finally {
      clearInterval(sampler);
    }
    const growth = peak - rssBefore;
    // Typically 17–25 MiB, once 46 MiB when garbage collection ran late; a relay that buffered
    // either body would grow by at least its 128 MiB.
    assert.ok(
      growth < SIZE / 2,
      `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB for a 128 MiB body`,
    );
  } finally {
    await Promise.all([edge.close(), upstream.close()]);
  }
});
