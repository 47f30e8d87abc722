/**
 * @module What a request body a rule reads may cost in memory, measured in the running server: a
 * body is bounded by `body_limit_bytes` whatever its framing.
 */
import assert from "node:assert/strict";
import v8 from "node:v8";
import vm from "node:vm";
import { startUpstream, startVestibule } from "./_servers.ts";

const MiB = 2 ** 20;

// A full collection before each sample, so only memory still referenced counts.
v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;
const external = () => {
  gc();
  return Deno.memoryUsage().external;
};

Deno.test("memory amplification: a body sent in 1-byte chunks holds about what it weighs, not 64 KiB a byte", async () => {
  const up = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [
      {
        name: "signup",
        type: "regional",
        match: {
          methods: ["POST"],
          path: "^/graphql$",
          body: { json: { operationName: "Signup" } },
        },
      },
      { name: "app", type: "regional" },
    ],
  });
  const encoder = new TextEncoder();
  /** The most memory vestibule holds while still reading a body sent as `chunks` chunks. */
  const heldFor = async (chunks: number, chunkSize: number) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
    try {
      const before = external();
      await conn.write(encoder.encode(
        "POST /graphql HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: application/json\r\n" +
          "Transfer-Encoding: chunked\r\n\r\n",
      ));
      const one = `${chunkSize.toString(16)}\r\n${" ".repeat(chunkSize)}\r\n`;
      await conn.write(encoder.encode(one.repeat(chunks))); // no last chunk: still reading
      let held = 0;
      for (let i = 0; i < 10; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        held = Math.max(held, external() - before);
      }
      return held;
    } finally {
      conn.close(); // vestibule's read fails: 499 client_closed
    }
  };
  try {
    await heldFor(1, 3000); // warm-up
    const oneChunk = await heldFor(1, 3000);
    // Kept as Deno hands them over (and each read raced against one 30 s timeout promise), 3,000
    // one-byte chunks held 187 MiB.
    const byteChunks = await heldFor(3000, 1);
    assert.ok(
      byteChunks < 10 * Math.max(oneChunk, 0) + 16 * MiB,
      `${(byteChunks / MiB).toFixed(1)} MiB held for 3,000 body bytes in 1-byte chunks, ` +
        `${(oneChunk / MiB).toFixed(1)} MiB in one chunk`,
    );
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});
