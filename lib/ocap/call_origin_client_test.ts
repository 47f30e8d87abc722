import assert from "node:assert/strict";
import { callOrigin, OriginAnswerTooLarge, OriginFailure } from "./call_origin.ts";

function rawOrigin(onConn: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const served = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      onConn(conn).catch(() => {});
    }
  })().catch(() => {});
  return {
    url: new URL(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/token`),
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await served;
    },
  };
}

const req = (url: URL) => ({
  target: "t",
  url,
  method: "POST",
  headers: new Headers(),
  body: new TextEncoder().encode("code=x"),
});

Deno.test("callOrigin() leaves nothing open on any path: no connection, client or timer", async (t) => {
  await t.step("timeout mid-body", async () => {
    const origin = rawOrigin(async (conn) => {
      await conn.read(new Uint8Array(65536));
      await conn.write(
        new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"),
      );
    });
    try {
      const answer = await callOrigin(req(origin.url), {
        fetch,
        signal: AbortSignal.timeout(200),
        timeoutMs: 200,
      });
      assert.equal(answer.status, 502);
    } finally {
      await origin.close();
    }
  });
  await t.step("body too large", async () => {
    const origin = rawOrigin(async (conn) => {
      await conn.read(new Uint8Array(65536));
      const w = conn.writable.getWriter();
      await w.write(
        new TextEncoder().encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
      );
      const chunk = new Uint8Array(1 << 20);
      for (let i = 0; i < 10; i++) {
        await w.write(new TextEncoder().encode(`${(1 << 20).toString(16)}\r\n`));
        await w.write(chunk);
        await w.write(new TextEncoder().encode("\r\n"));
      }
    });
    try {
      await assert.rejects(
        callOrigin(req(origin.url), {
          fetch,
          signal: new AbortController().signal,
          timeoutMs: 5000,
        }),
        OriginAnswerTooLarge,
      );
    } finally {
      await origin.close();
    }
  });
  await t.step("fetch refuses before sending", async () => {
    await assert.rejects(
      callOrigin(req(new URL("ftp://127.0.0.1/x")), {
        fetch,
        signal: new AbortController().signal,
        timeoutMs: 5000,
      }),
      OriginFailure,
    );
  });
  await t.step("timeout before the answer", async () => {
    const origin = rawOrigin(async (conn) => {
      await conn.read(new Uint8Array(65536));
    });
    try {
      await assert.rejects(
        callOrigin(req(origin.url), { fetch, signal: AbortSignal.timeout(200), timeoutMs: 200 }),
        OriginFailure,
      );
    } finally {
      await origin.close();
    }
  });
});
