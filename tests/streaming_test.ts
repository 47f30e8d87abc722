/** Large bodies stream through a regional route in both directions without being buffered. */
import assert from "node:assert/strict";
import { startProcess } from "./_processes.ts";
import { startUpstream } from "./_servers.ts";

const SIZE = 128 * 1024 * 1024; // ≥ 50 MiB, as the issue asks; large enough that buffering shows
const CHUNK_SIZE = 64 * 1024;

/** The byte at `offset` of every body here: a chunk moved, lost or overwritten shows. */
const byteAt = (offset: number) => (offset ^ (offset >>> 8) ^ (offset >>> 16)) & 0xff;

function generated(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) return controller.close();
      const chunk = new Uint8Array(CHUNK_SIZE);
      for (let i = 0; i < chunk.length; i++) chunk[i] = byteAt(sent + i);
      controller.enqueue(chunk);
      sent += CHUNK_SIZE;
    },
  });
}

/** Counts a body's bytes and checks each is the one {@linkcode generated} wrote there. */
async function count(stream: ReadableStream<Uint8Array> | null): Promise<number> {
  let total = 0;
  for await (const chunk of stream ?? []) {
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] !== byteAt(total + i)) throw new Error(`Wrong byte at offset ${total + i}`);
    }
    total += chunk.byteLength;
  }
  return total;
}

/** The most `sample()` returned, every 20 ms while `transfer` runs. */
async function peakDuring(sample: () => number, transfer: () => Promise<void>): Promise<number> {
  let peak = sample();
  const sampler = setInterval(() => (peak = Math.max(peak, sample())), 20);
  try {
    await transfer();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, sample());
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

Deno.test("regional route streams a 128 MiB download and upload, byte for byte, without buffering them", async (t) => {
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
  // vestibule in a process of its own, so its memory is measured apart from the test's client
  // and upstream, which read every byte in JavaScript too.
  const rules = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    rules,
    JSON.stringify({
      regions: { us: { origin: upstream.url } },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    }),
  );
  const edge = await startProcess("run", {
    providerUrl: upstream.url,
    kvPath: `${rules}.kv`,
    env: { VESTIBULE_RULES: rules },
  });
  const download = async () =>
    assert.equal(await count((await fetch(`${edge.url}/big`)).body), SIZE);
  const upload = async () => {
    const res = await fetch(`${edge.url}/upload`, {
      method: "POST",
      body: generated(SIZE),
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(await res.text(), String(SIZE));
    assert.equal(uploaded, SIZE);
  };
  try {
    // One of each first, so start-up growth of the heap and allocator is not counted.
    await download();
    await upload();
    // Both stream inside Deno's runtime (fetch takes Deno.serve's body stream as it is), so a
    // buffered body, which would add its whole size, stands out.
    const limits = { download: SIZE / 4, upload: SIZE / 4 };
    for (const [name, transfer] of [["download", download], ["upload", upload]] as const) {
      await t.step(name, async () => {
        const before = edge.rss();
        const growth = (await peakDuring(edge.rss, transfer)) - before;
        assert.ok(growth < limits[name], `RSS grew by ${mib(growth)} for a ${mib(SIZE)} ${name}`);
      });
    }
  } finally {
    await edge.stop();
    await Promise.all([upstream.close(), Deno.remove(rules)]);
  }
});
