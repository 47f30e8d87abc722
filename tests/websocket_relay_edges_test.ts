/**
 * @module WebSocket relay edges: the handshake's time in the access line, nothing opened for a
 * client already gone, the shared budget closing the relay that holds most, messages kept in order
 * while older ones wait in the relay (also before the client's socket opens), which requests are
 * WebSocket handshakes at all, and a client that stalls and then reads again.
 */
import assert from "node:assert/strict";
import { RELAY_OVERLOADED, RelayBudget, SLOW_READER_MS } from "../lib/websocket_proxy.ts";
import {
  binaryFrame,
  rawWebSocketClient,
  rawWebSocketUpstream,
  readExactly,
  readHandshake,
  readUntilClose,
  RELAY_METRICS_TOKEN,
  switchingProtocols,
  textFrame,
  withRawRelay,
  writeAll,
} from "./_raw_websocket.ts";
import { oneRegion, settles, silentServer, startVestibule, within } from "./_servers.ts";

/** A client's WebSocket handshake headers (RFC 6455 §4.1's sample key). */
const HANDSHAKE = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
};

Deno.test("websocket: the access line of a WebSocket session gives the upstream handshake's time as upstream_ms", async () => {
  // An upstream that answers its handshake 300 ms late.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = (async () => {
    const conn = await listener.accept();
    const accept = await readHandshake(conn);
    await new Promise((r) => setTimeout(r, 300));
    await writeAll(conn, switchingProtocols(accept));
    return conn;
  })();
  const up = {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    accepted,
    close: () => listener.close(),
  };
  const lines: Record<string, unknown>[] = [];
  await withRawRelay(
    async () => {
      await new Promise((r) => setTimeout(r, 50));
      const line = lines.find((l) => l.status === 101);
      assert.ok(line, `no access line for the 101: ${JSON.stringify(lines)}`);
      assert.equal(typeof line.upstream_ms, "number", JSON.stringify(line));
      assert.ok((line.upstream_ms as number) >= 250, JSON.stringify(line));
    },
    up,
    { log: (line: string) => lines.push(JSON.parse(line)) },
  );
});

Deno.test("websocket: a request already abandoned when it reaches the relay opens no upstream WebSocket that waits for the timeout", async () => {
  // The upstream accepts the connection and never answers its handshake.
  const silent = silentServer();
  const url = `http://127.0.0.1:${silent.port}`;
  const edge = startVestibule(
    oneRegion(url, { regions: { us: { origin: url, timeout_ms: 3_000 } } }),
  );
  const gone = new AbortController();
  gone.abort();
  try {
    const started = performance.now();
    const answer = await within(
      Promise.resolve(edge.app.fetch(
        new Request(`${edge.url}/cable`, {
          headers: HANDSHAKE,
          signal: gone.signal,
        }),
      )),
      2_000,
    );
    assert.notEqual(answer, "pending", "vestibule waited on the upstream for a client long gone");
    assert.ok(performance.now() - started < 1_500);
  } finally {
    await Promise.all([silent.close(), edge.close()]);
  }
});

Deno.test("websocket: memory exhaustion, over the shared budget the relay holding most is closed, not a smaller one", async () => {
  const budget = new RelayBudget(16 << 20);
  await withRawRelay(
    async (a) => {
      // A: 14 MiB for a client that reads nothing.
      for (let i = 0; i < 14; i++) await writeAll(a.upstream, binaryFrame(1 << 20, false));
      // Polled, not a fixed wait: under load the relay may read the 14 MiB later (9–10 MiB were
      // held after 300 ms beside two busy loops).
      for (let waited = 0; budget.queued <= 6 << 20 && waited < 2_000; waited += 20) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const heldForA = budget.queued;
      assert.ok(heldForA > 6 << 20, `only ${heldForA} bytes held for A`);
      await withRawRelay(
        async (b) => {
          const aTold = readUntilClose(a.upstream);
          const bTold = readUntilClose(b.upstream);
          let settledA = false, settledB = false;
          aTold.then(() => settledA = true, () => settledA = true);
          bTold.then(() => settledB = true, () => settledB = true);
          // B: 1 MiB at a time, to a client that reads nothing, until the budget closes a relay.
          for (let i = 0; i < 20 && !settledA && !settledB; i++) {
            await writeAll(b.upstream, binaryFrame(1 << 20, false));
            await new Promise((r) => setTimeout(r, 20));
          }
          const a1 = await within(aTold, 2_000);
          assert.ok(a1 !== "pending", `A, holding ${heldForA >> 20} MiB, was not closed`);
          assert.deepEqual([a1.code, a1.reason], [
            RELAY_OVERLOADED,
            "relay memory budget exceeded",
          ]);
          assert.equal(settledB, false, "B, holding less, was closed");
        },
        undefined,
        { webSocketBudget: budget },
      );
    },
    undefined,
    { webSocketBudget: budget },
  );
});

/** Reads frames until a close: the text messages in order, and the close code. */
async function readTexts(conn: Deno.Conn): Promise<{ texts: string[]; code?: number }> {
  const texts: string[] = [];
  const decoder = new TextDecoder();
  while (true) {
    const head = await readExactly(conn, 2);
    if (!head) return { texts };
    let length = head[1] & 0x7f;
    if (length === 126) length = new DataView((await readExactly(conn, 2))!.buffer).getUint16(0);
    else if (length === 127) {
      length = Number(new DataView((await readExactly(conn, 8))!.buffer).getBigUint64(0));
    }
    const payload = await readExactly(conn, length);
    if (!payload) return { texts };
    if ((head[0] & 0x0f) === 0x8) return { texts, code: (payload[0] << 8) | payload[1] };
    if ((head[0] & 0x0f) === 0x1) texts.push(decoder.decode(payload));
  }
}

Deno.test("websocket: lost order, messages that arrive while older ones wait in the relay are not sent ahead of them", async () => {
  await withRawRelay(async ({ client, upstream }) => {
    const reading = readTexts(client);
    const sent: string[] = [];
    for (let round = 0; round < 6; round++) {
      await writeAll(upstream, binaryFrame(2 << 20, false));
      for (let i = 0; i < 40; i++) {
        const text = `r${round}m${i}`;
        sent.push(text);
        await writeAll(upstream, textFrame(text));
        await new Promise((r) => setTimeout(r, 1));
      }
    }
    await writeAll(upstream, new Uint8Array([0x88, 2, 0x0f, 0xa1])); // close 4001
    const got = await within(reading, 10_000);
    assert.ok(got !== "pending", "the client was never closed");
    assert.deepEqual(got.texts, sent);
  });
});

/**
 * A relay whose upstream sends `frames` with its 101, behind a server slow to write the client's
 * 101 (a busy isolate): all of them reach the relay before the client's socket opens.
 */
async function withEarlyFrames(
  frames: Uint8Array[],
  deps: Parameters<typeof startVestibule>[1],
  fn: (relay: { client: Deno.Conn; edge: ReturnType<typeof startVestibule> }) => Promise<void>,
): Promise<void> {
  const early = new Uint8Array(frames.reduce((n, frame) => n + frame.length, 0));
  frames.reduce((at, frame) => (early.set(frame, at), at + frame.length), 0);
  const up = rawWebSocketUpstream("", early);
  const edge = startVestibule(oneRegion(up.url), deps);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const answer = await edge.app.fetch(request);
    if (answer.status === 101) await new Promise((r) => setTimeout(r, 300));
    return answer;
  });
  const client = await rawWebSocketClient(server.addr.port);
  const upstream = await settles(up.accepted, 10_000, "the upstream got no handshake");
  try {
    await fn({ client, edge });
  } finally {
    client.close();
    upstream.close();
    up.close();
    await server.shutdown();
    await edge.close();
  }
}

/** The head of the answer on `conn`, read a byte at a time so no frame after it is taken. */
async function answerHead(conn: Deno.Conn): Promise<string> {
  let head = "";
  const reading = (async () => {
    while (!head.includes("\r\n\r\n")) {
      const byte = await readExactly(conn, 1);
      if (!byte) break;
      head += String.fromCharCode(byte[0]);
    }
  })();
  await settles(reading, 10_000, "no answer to the handshake");
  return head;
}

Deno.test("websocket: a client gone right as the upstream opens is 499 client_closed, and the upstream socket is closed", async () => {
  const up = rawWebSocketUpstream();
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule(oneRegion(up.url), {
    deps: { log: (line: string) => lines.push(JSON.parse(line)) },
  });
  const gone = new AbortController();
  const Original = globalThis.WebSocket;
  const made: WebSocket[] = [];
  // The client leaves in the same task as the upstream's "open", after the relay's own listener
  // saw it: the abort comes after the handshake settled, before the client is upgraded.
  class LeavingOnOpen extends Original {
    // deno-lint-ignore no-explicit-any
    constructor(url: string | URL, options?: any) {
      super(url, options);
      made.push(this);
      queueMicrotask(() => this.addEventListener("open", () => gone.abort(), { once: true }));
    }
  }
  globalThis.WebSocket = LeavingOnOpen as typeof WebSocket;
  try {
    const answer = await settles(
      Promise.resolve(edge.app.fetch(
        new Request(`${edge.url}/cable`, {
          headers: HANDSHAKE,
          signal: gone.signal,
        }),
      )),
      10_000,
      "no answer",
    );
    assert.equal(made.length, 1, "the relay opened no upstream socket");
    assert.equal(answer.status, 499, `status ${answer.status}: ${JSON.stringify(lines)}`);
    await answer.body?.cancel();
    assert.ok(made[0].readyState >= WebSocket.CLOSING, "the upstream socket stayed open");
    const line = lines.find((l) => l.status === 499);
    assert.equal(line?.error, "client_closed", JSON.stringify(lines));
  } finally {
    globalThis.WebSocket = Original;
    (await up.accepted.catch(() => null))?.close();
    up.close();
    await edge.close();
  }
});

Deno.test("websocket: a relay the budget gives up on while handing out early messages is counted once and holds nothing after", async () => {
  // 40 messages of 256 KiB sent with the upstream's 101, waiting in the relay for the client.
  const frames = Array.from({ length: 40 }, () => binaryFrame(256 << 10, false));
  const budget = new RelayBudget(1536 << 10);
  const deps = { metricsToken: RELAY_METRICS_TOKEN, webSocketBudget: budget };
  await withEarlyFrames(frames, { deps }, async ({ client, edge }) => {
    const told = await within(readUntilClose(client), 10_000);
    assert.ok(told !== "pending", "the client was never closed");
    assert.deepEqual([told.code, told.reason], [RELAY_OVERLOADED, "relay memory budget exceeded"]);
    // The client has not answered the close: the relay's close event has not come yet.
    assert.equal(budget.queued, 0, `${budget.queued} bytes still counted for a relay given up on`);
    const scrape = await (await fetch(`${edge.url}/_vestibule/metrics`, {
      headers: { authorization: `Bearer ${RELAY_METRICS_TOKEN}` },
    })).text();
    assert.match(scrape, /^vestibule_websocket_overloaded_total\{upstream="us"\} 1$/m);
  });
});

Deno.test("websocket: a DELETE or OPTIONS carrying Upgrade: websocket is forwarded as itself, not turned into a WebSocket", async (t) => {
  let upgrades = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    if (req.headers.get("upgrade") === "websocket" && req.method === "GET") {
      upgrades++;
      return Deno.upgradeWebSocket(req).response;
    }
    return new Response(`plain ${req.method} ${await req.text()}`);
  });
  const edge = startVestibule(oneRegion(`http://127.0.0.1:${server.addr.port}`));
  try {
    for (const method of ["DELETE", "OPTIONS"]) {
      await t.step(method, async () => {
        const answer = await fetch(`${edge.url}/cable`, {
          method,
          headers: HANDSHAKE,
        });
        const body = await answer.text();
        assert.equal(answer.status, 200, body);
        assert.equal(body, `plain ${method} `);
        assert.equal(upgrades, 0, "the upstream was asked for a WebSocket");
      });
    }
  } finally {
    await Promise.all([edge.close(), server.shutdown()]);
  }
});

Deno.test("websocket: a client that stalled over the watch limit and then reads at full speed gets all 40 MiB, not 4013", async () => {
  await withRawRelay(async ({ client, upstream }) => {
    // 40 one-MiB messages: over the 16 MiB watch limit, under the 64 MiB hard limit.
    for (let i = 0; i < 40; i++) await writeAll(upstream, binaryFrame(1 << 20, false));
    await new Promise((r) => setTimeout(r, 1_000)); // the client reads nothing yet
    // Then the upstream says goodbye, and the client reads everything as fast as it comes.
    await writeAll(upstream, new Uint8Array([0x88, 2, 0x0f, 0xa1])); // close 4001
    const told = await within(readUntilClose(client), SLOW_READER_MS + 5_000);
    assert.ok(told !== "pending", "the client was never closed");
    assert.equal(
      told.code,
      4001,
      `closed with ${told.code} ${told.reason} after ${told.bytes >> 20} MiB`,
    );
    assert.equal(told.bytes, 40 << 20);
  });
});

Deno.test("websocket: lost frames, messages and a close the upstream sends while the client's 101 is still being written arrive in order", async () => {
  // 3 MiB first, so what follows waits in the relay behind them, then texts and a close.
  const frames = [
    ...[0, 1, 2].map(() => binaryFrame(1 << 20, false)),
    textFrame("one"),
    textFrame("two"),
    textFrame("three"),
  ];
  const close = new Uint8Array([0x88, 5, 0x0f, 0xa1, 0x62, 0x79, 0x65]); // 4001 "bye"
  await withEarlyFrames([...frames, close], {}, async ({ client }) => {
    const texts: string[] = [];
    let code: number | undefined, reason = "", binary = 0;
    const reading = (async () => {
      while (true) {
        const head = await readExactly(client, 2);
        if (!head) return;
        let length = head[1] & 0x7f;
        if (length === 127) {
          length = Number(new DataView((await readExactly(client, 8))!.buffer).getBigUint64(0));
        }
        const payload = (await readExactly(client, length))!;
        if ((head[0] & 0x0f) === 0x2) {
          binary += payload.length;
          continue;
        }
        if ((head[0] & 0x0f) === 0x8) {
          code = (payload[0] << 8) | payload[1];
          reason = new TextDecoder().decode(payload.subarray(2));
          return;
        }
        texts.push(new TextDecoder().decode(payload));
      }
    })();
    assert.notEqual(await within(reading, 10_000), "pending", "the client was never closed");
    assert.equal(binary, 3 << 20);
    assert.deepEqual(texts, ["one", "two", "three"]);
    assert.deepEqual([code, reason], [4001, "bye"]);
  });
});

Deno.test("websocket: a subprotocol list with an empty element (RFC 9110 §5.6.1) is still the client's offer, not 400", async (t) => {
  const offers: string[] = [];
  const sockets: WebSocket[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    offers.push(req.headers.get("sec-websocket-protocol") ?? "");
    const { socket, response } = Deno.upgradeWebSocket(req, { protocol: "chat.v2" });
    sockets.push(socket);
    return response;
  });
  const edge = startVestibule(oneRegion(`http://127.0.0.1:${server.addr.port}`));
  try {
    for (const offer of ["chat.v2,", "chat.v2, , x"]) {
      await t.step(JSON.stringify(offer), async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
        try {
          await writeAll(
            conn,
            new TextEncoder().encode(
              "GET /cable HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
                `Sec-WebSocket-Protocol: ${offer}\r\n\r\n`,
            ),
          );
          const head = await answerHead(conn);
          assert.match(head, /^HTTP\/1\.1 101 /, head);
          assert.match(head, /^sec-websocket-protocol: chat\.v2\r$/im, head);
        } finally {
          conn.close();
        }
      });
    }
  } finally {
    for (const socket of sockets) if (socket.readyState < WebSocket.CLOSING) socket.close();
    await Promise.all([edge.close(), server.shutdown()]);
  }
});

Deno.test("websocket: socket leak, when Deno refuses the client's upgrade after the upstream accepted, the upstream socket is closed", async () => {
  const up = rawWebSocketUpstream();
  const edge = startVestibule(oneRegion(up.url));
  const real = Deno.upgradeWebSocket;
  // As Deno did for `Connection: Upgrade\xA0` before vestibule read tokens as it does.
  Object.defineProperty(Deno, "upgradeWebSocket", {
    value: () => {
      throw new TypeError("Invalid Header: 'connection' header must contain 'Upgrade'");
    },
    configurable: true,
    writable: true,
  });
  try {
    const answer = await fetch(`${edge.url}/cable`, {
      headers: HANDSHAKE,
    });
    await answer.body?.cancel();
    assert.equal(answer.status, 500);
    const upstream = await settles(up.accepted, 10_000, "the upstream got no handshake");
    try {
      const told = await within(readUntilClose(upstream), 5_000);
      assert.notEqual(told, "pending", "the upstream WebSocket was left open");
    } finally {
      upstream.close();
    }
  } finally {
    Object.defineProperty(Deno, "upgradeWebSocket", {
      value: real,
      configurable: true,
      writable: true,
    });
    up.close();
    await edge.close();
  }
});

Deno.test("websocket: Upgrade: WebSocket in another letter case is relayed (RFC 6455 §4.2.1: case-insensitive)", async () => {
  let upgrades = 0;
  const sockets: WebSocket[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("plain GET");
    }
    upgrades++;
    const { socket, response } = Deno.upgradeWebSocket(req);
    sockets.push(socket);
    return response;
  });
  const edge = startVestibule(oneRegion(`http://127.0.0.1:${server.addr.port}`));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
  try {
    await writeAll(
      conn,
      new TextEncoder().encode(
        "GET /cable HTTP/1.1\r\nHost: app\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ),
    );
    const head = await answerHead(conn);
    assert.match(head, /^HTTP\/1\.1 101 /, head);
    assert.equal(upgrades, 1);
  } finally {
    conn.close();
    for (const socket of sockets) if (socket.readyState < WebSocket.CLOSING) socket.close();
    await Promise.all([edge.close(), server.shutdown()]);
  }
});
