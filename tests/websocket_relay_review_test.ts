/** Review of the paced relay (c5b31b3): what waits in the relay, and what the limits count. */
import assert from "node:assert/strict";
import { RELAY_OVERLOADED, SLOW_READER_MS } from "../lib/websocket_proxy.ts";
import {
  binaryFrame,
  rawWebSocketClient,
  rawWebSocketUpstream,
  readUntilClose,
  textFrame,
  withRawRelay,
  writeAll,
} from "./_raw_websocket.ts";
import { oneRegion, startVestibule, within } from "./_servers.ts";

Deno.test("memory exhaustion: 30 MiB of non-ASCII text parked for a client that reads nothing is closed with 4013", async () => {
  // "あ" is 3 bytes in UTF-8 (what bufferedAmount counts once handed) and 2 in V8's memory,
  // but 1 as the relay counts a queued string.
  await withRawRelay(async ({ upstream }) => {
    // The client reads nothing.
    const frame = textFrame("あ".repeat((1 << 20) / 3 | 0)); // 1 MiB of UTF-8
    for (let i = 0; i < 30; i++) await writeAll(upstream, frame);
    const told = await within(readUntilClose(upstream), SLOW_READER_MS + 3_000);
    assert.ok(told !== "pending", "30 MiB of text held for a client that reads nothing, no close");
    assert.equal(told.code, RELAY_OVERLOADED);
  });
});

/** A close frame, masked (zero key) when a client sends it. */
function closeFrame(code: number, reason: string, masked: boolean): Uint8Array {
  const text = new TextEncoder().encode(reason);
  const head = masked ? [0x88, 0x80 | (2 + text.length), 0, 0, 0, 0] : [0x88, 2 + text.length];
  return new Uint8Array([...head, code >> 8, code & 0xff, ...text]);
}

Deno.test("websocket: lost closes, with 12 MiB queued for a peer that has not read yet, every order of closes reaches both sides", async (t) => {
  type Peer = "client" | "upstream";
  const cases: Array<{ sender: Peer; end: "sender closes" | "reader closes" | "reader drops" }> =
    [];
  for (const sender of ["upstream", "client"] as const) {
    for (const end of ["sender closes", "reader closes", "reader drops"] as const) {
      cases.push({ sender, end });
    }
  }
  for (const { sender, end } of cases) {
    await t.step(`${sender} sends 12 MiB, then the ${end}`, async () => {
      const up = rawWebSocketUpstream();
      const edge = startVestibule(oneRegion(up.url));
      const client = await rawWebSocketClient(edge.port);
      const upstream = await up.accepted;
      const [from, to] = sender === "upstream" ? [upstream, client] : [client, upstream];
      const masked = (peer: Deno.Conn) => peer === client;
      try {
        for (let i = 0; i < 12; i++) await writeAll(from, binaryFrame(1 << 20, masked(from)));
        await new Promise((r) => setTimeout(r, 300)); // the relay queues what `to` does not read
        if (end === "sender closes") {
          await writeAll(from, closeFrame(4001, "bye", masked(from)));
          const got = await within(readUntilClose(to), 10_000);
          assert.ok(got !== "pending", "the reader was never closed");
          assert.equal(got.bytes, 12 << 20, "every message arrived before the close");
          assert.deepEqual([got.code, got.reason], [4001, "bye"]);
        } else if (end === "reader closes") {
          await writeAll(to, closeFrame(4002, "leaving", masked(to)));
          const reading = readUntilClose(to); // the reader reads on until its close is answered
          const got = await within(readUntilClose(from), 10_000);
          assert.ok(got !== "pending", "the sender was never told the reader closed");
          assert.deepEqual([got.code, got.reason], [4002, "leaving"]);
          await within(reading, 10_000);
        } else {
          to.close();
          const got = await within(readUntilClose(from), 10_000);
          assert.ok(got !== "pending", "the sender was never told the reader left");
          assert.equal(got.code, undefined);
        }
        const health = await fetch(`${edge.url}/_vestibule/health`);
        assert.equal(health.status, 200);
        await health.body?.cancel();
      } finally {
        for (const conn of [client, upstream]) {
          try {
            conn.close();
          } catch { /* closed above */ }
        }
        up.close();
        await edge.close();
      }
    });
  }
});

/** Reads frames until a close: the text messages in order, the binary bytes, and the close. */
async function readMessages(conn: Deno.Conn) {
  let buf = new Uint8Array(0);
  const need = async (n: number) => {
    while (buf.length < n) {
      const chunk = new Uint8Array(1 << 16);
      const got = await conn.read(chunk);
      if (got === null) return false;
      const joined = new Uint8Array(buf.length + got);
      joined.set(buf);
      joined.set(chunk.subarray(0, got), buf.length);
      buf = joined;
    }
    return true;
  };
  const texts: string[] = [];
  let binary = 0;
  while (await need(2)) {
    let length = buf[1] & 0x7f;
    let at = 2;
    if (length === 126) {
      if (!await need(4)) break;
      length = (buf[2] << 8) | buf[3];
      at = 4;
    } else if (length === 127) {
      if (!await need(10)) break;
      length = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(2));
      at = 10;
    }
    if (!await need(at + length)) break;
    const op = buf[0] & 0x0f;
    const payload = buf.subarray(at, at + length);
    buf = buf.slice(at + length);
    if (op === 1) texts.push(new TextDecoder().decode(payload));
    else if (op === 2) binary += length;
    else if (op === 8) {
      return { texts, binary, code: (payload[0] << 8) | payload[1] };
    }
  }
  return { texts, binary, code: undefined };
}

/** An unmasked text frame of under 126 bytes. */
const smallText = (text: string) => {
  const payload = new TextEncoder().encode(text);
  return new Uint8Array([0x81, payload.length, ...payload]);
};

Deno.test("websocket: lost frames, 50,000 messages queued behind 6 MiB for a client that reads late arrive in order before the upstream's close", async () => {
  await withRawRelay(async ({ client, upstream }) => {
    const count = 50_000;
    for (let i = 0; i < 6; i++) await writeAll(upstream, binaryFrame(1 << 20, false));
    const frames = [];
    for (let i = 0; i < count; i++) frames.push(smallText(`m${i}`));
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of frames) {
      all.set(f, at);
      at += f.length;
    }
    await writeAll(upstream, all);
    await writeAll(upstream, closeFrame(4001, "bye", false));
    await new Promise((r) => setTimeout(r, 500)); // the client is slow to start reading
    const got = await within(readMessages(client), 20_000);
    assert.ok(got !== "pending", "the client was never closed");
    assert.equal(got.binary, 6 << 20);
    assert.equal(got.texts.length, count, "every message arrived");
    assert.ok(got.texts.every((t, i) => t === `m${i}`), "in order");
    assert.equal(got.code, 4001);
  });
});

Deno.test("websocket: lost frames, 12 MiB and 1,000 messages an upstream sends with its 101, then its close, reach a client that reads late in order", async () => {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 12; i++) parts.push(binaryFrame(1 << 20, false));
  for (let i = 0; i < 1_000; i++) parts.push(smallText(`m${i}`));
  parts.push(closeFrame(4001, "bye", false));
  const extra = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    extra.set(p, at);
    at += p.length;
  }
  await withRawRelay(async ({ client }) => {
    await new Promise((r) => setTimeout(r, 300)); // the client is slow to start reading
    const got = await within(readMessages(client), 10_000);
    assert.ok(got !== "pending", "the client was never closed");
    assert.equal(got.binary, 12 << 20);
    assert.deepEqual(got.texts, Array.from({ length: 1_000 }, (_, i) => `m${i}`));
    assert.equal(got.code, 4001);
  }, rawWebSocketUpstream("", extra));
});

Deno.test("websocket: CPU, a client that stopped reading with a backlog under the limits costs no timer every 10 ms", async () => {
  // Counts the callbacks of every interval started while the relay runs (vestibule is in-process).
  let ticks = 0;
  const realSetInterval = globalThis.setInterval;
  globalThis.setInterval = ((fn: () => void, ms?: number) =>
    realSetInterval(() => {
      ticks++;
      fn();
    }, ms)) as typeof setInterval;
  const up = rawWebSocketUpstream();
  const edge = startVestibule(oneRegion(up.url));
  const client = await rawWebSocketClient(edge.port); // reads nothing
  const upstream = await up.accepted;
  try {
    // 12 MiB: past what the socket is handed, under the 16 MiB the limits start at.
    for (let i = 0; i < 12; i++) await writeAll(upstream, binaryFrame(1 << 20, false));
    await new Promise((r) => setTimeout(r, 500)); // the relay has queued what the client left
    const before = ticks;
    await new Promise((r) => setTimeout(r, 2_000));
    const perSecond = (ticks - before) / 2;
    assert.ok(perSecond <= 10, `${perSecond} looks a second at a client that reads nothing`);
  } finally {
    globalThis.setInterval = realSetInterval;
    client.close();
    upstream.close();
    up.close();
    await edge.close();
  }
});
