/**
 * OCAP sends each origin request once: Deno's fetch sends a request again, unseen, when a pooled
 * keep-alive connection breaks before the answer (denoland/deno#32566, #36415), also after the
 * provider read it. For a one-time code that second copy is a second redemption.
 */
import assert from "node:assert/strict";
import { startVestibule } from "./_servers.ts";
import { OCAP_ENV, ocapRules, tokenRequest } from "./_ocap.ts";

/**
 * A provider stand-in that redeems codes: the first request answers 200 and keeps the connection
 * open, a new code is redeemed and then the connection breaks before the answer (a proxy in front
 * of the provider dropping it), and a code seen before is 400 `invalid_grant`.
 */
function redeemingProvider() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: string[] = [];
  const conns = new Set<Deno.Conn>();
  const decoder = new TextDecoder();
  async function serve(conn: Deno.Conn): Promise<void> {
    let text = "";
    const buffer = new Uint8Array(65536);
    while (true) {
      const end = text.indexOf("\r\n\r\n");
      const length = Number(/content-length: *(\d+)/i.exec(text)?.[1] ?? 0);
      if (end === -1 || text.length < end + 4 + length) {
        const n = await conn.read(buffer);
        if (n === null) return;
        text += decoder.decode(buffer.subarray(0, n));
        continue;
      }
      const code = new URLSearchParams(text.slice(end + 4, end + 4 + length)).get("code") ?? "";
      text = text.slice(end + 4 + length);
      const again = seen.includes(code);
      seen.push(code);
      if (code !== "warm-up" && !again) return; // redeemed; the answer never leaves
      const body = again ? '{"error":"invalid_grant"}' : '{"access_token":"warm"}';
      const status = again ? "400 Bad Request" : "200 OK";
      await conn.write(new TextEncoder().encode(
        `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      ));
    }
  }
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      serve(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // already closed
        }
      });
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    seen,
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      await serving;
    },
  };
}

Deno.test("OCAP code replay: a provider connection that breaks after the provider read the code does not send the code again", async () => {
  const provider = redeemingProvider();
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    // An earlier exchange leaves a kept-alive connection to the provider.
    const warm = await fetch(tokenRequest(vestibule.url, { body: "code=warm-up" }));
    assert.equal(warm.status, 200);
    await warm.body?.cancel();
    const response = await fetch(tokenRequest(vestibule.url, {
      body: "grant_type=authorization_code&code=one-time",
      headers: { accept: "application/json" },
    }));
    const answer = await response.json();
    assert.deepEqual(provider.seen.filter((code) => code === "one-time"), ["one-time"]);
    // No answer came: the caller learns the exchange failed, not that its code was spent twice.
    assert.equal(response.status, 502);
    assert.equal(answer.error, "upstream_unavailable");
  } finally {
    await vestibule.close();
    await provider.close();
    kv.close();
  }
});
