/**
 * OCAP hazards each pinned by a test of its own: path tricks that would send a call elsewhere,
 * hop-by-hop headers in either direction, an answer no client may be handed, two clients'
 * credentials sharing one answer, and a target's own TTL.
 */
import assert from "node:assert/strict";
import { LEASE_MARGIN_MS } from "../lib/ocap/single_flight.ts";
import { startUpstream, startVestibule } from "./_servers.ts";
import { OCAP_ENV, OCAP_KEY, ocapRules, tokenRequest } from "./_ocap.ts";
import { h2AbandonUpload } from "./_http2.ts";

const KEY = { "Ocap-Key": OCAP_KEY };

Deno.test("OCAP open proxy: an empty segment just before the last one is ocap_bad_path", async (t) => {
  const provider = startUpstream();
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    for (const path of ["/_ocap/provider//evil.test", "/_ocap/provider/a//b"]) {
      await t.step(path, async () => {
        const response = await fetch(`${vestibule.url}${path}`, { headers: KEY });
        assert.equal(response.status, 400, path);
        assert.equal((await response.json()).error, "ocap_bad_path");
      });
    }
    assert.equal(provider.received.length, 0, "the provider was called for an empty segment");
  } finally {
    await vestibule.close();
    await provider.close();
    kv.close();
  }
});

/** Sends raw request bytes (so no client re-encodes the target) and returns the answer's text. */
async function rawOcap(port: number, target: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head =
    `GET ${target} HTTP/1.1\r\nHost: x\r\nOcap-Key: ${OCAP_KEY}\r\nConnection: close\r\n\r\n`;
  await conn.write(new TextEncoder().encode(head));
  return new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
}

Deno.test("OCAP open proxy: an escaped DEL or a raw non-ASCII byte in the path is ocap_bad_path", async (t) => {
  const provider = startUpstream();
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    for (
      const path of ["/_ocap/provider/a%7Fb", "/_ocap/provider/a%7fb", "/_ocap/provider/caf\u00e9"]
    ) {
      await t.step(JSON.stringify(path), async () => {
        const answer = await rawOcap(vestibule.port, path);
        assert.match(answer, /^HTTP\/1\.1 400 /);
        assert.match(answer, /ocap_bad_path/);
      });
    }
    assert.deepEqual(provider.received.map((r) => r.path), [], "the provider was called");
  } finally {
    await vestibule.close();
    await provider.close();
    kv.close();
  }
});

Deno.test("OCAP credential leak: hop-by-hop headers, also ones Connection names in capitals, and Proxy (httpoxy) never reach the provider", async () => {
  const provider = startUpstream();
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    const response = await fetch(`${vestibule.url}/_ocap/provider/token`, {
      method: "POST",
      headers: {
        ...KEY,
        "content-type": "application/x-www-form-urlencoded",
        "proxy-authorization": "Basic cHJveHk6c2VjcmV0",
        "proxy-connection": "keep-alive",
        "keep-alive": "timeout=5",
        trailer: "x-checksum",
        connection: "X-Internal-Token",
        "x-internal-token": "secret",
        // httpoxy: a provider behind CGI would take it as HTTP_PROXY.
        proxy: "http://evil.example:8080",
      },
      body: "grant_type=authorization_code&code=one-time-code",
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(provider.received.length, 1);
    const [got] = provider.received;
    for (
      const name of [
        "proxy-authorization",
        "proxy-connection",
        "keep-alive",
        "trailer",
        "x-internal-token",
        "proxy",
      ]
    ) {
      assert.equal(got.headers.get(name), null, `${name} reached the provider`);
    }
  } finally {
    await vestibule.close();
    await provider.close();
    kv.close();
  }
});

Deno.test("OCAP: a provider that answers 101 to a token request is one shared 502 upstream_invalid, not a 500", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      await conn.read(new Uint8Array(65536));
      await conn.write(
        new TextEncoder().encode(
          "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ),
      );
    }
  })().catch(() => {});
  const kv = await Deno.openKv(":memory:");
  const origin = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  const vestibule = startVestibule(ocapRules(origin), { env: OCAP_ENV, deps: { kv } });
  try {
    for (const cache of ["miss", "hit"]) {
      const response = await fetch(tokenRequest(vestibule.url));
      assert.equal(response.status, 502);
      assert.equal(response.headers.get("ocap-cache"), cache);
      assert.equal((await response.json()).error, "upstream_invalid");
    }
    assert.equal(conns.length, 1, "the provider was called once");
  } finally {
    await vestibule.close();
    listener.close();
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // already closed by the client
      }
    }
    await serving;
    kv.close();
  }
});

Deno.test("OCAP: headers the provider's Connection names are not shared with callers", async () => {
  const provider = startUpstream(() =>
    Response.json({ access_token: "t" }, {
      headers: { connection: "X-Hop-Secret", "x-hop-secret": "for-the-next-hop-only" },
    })
  );
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    for (const cache of ["miss", "hit"]) {
      const response = await fetch(tokenRequest(vestibule.url));
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("ocap-cache"), cache);
      assert.equal(response.headers.get("x-hop-secret"), null);
      await response.body?.cancel();
    }
  } finally {
    await vestibule.close();
    await provider.close();
    kv.close();
  }
});

Deno.test("OCAP token leak: identical bodies from two clients with different Authorization get their own answers", async () => {
  let n = 0;
  const provider = startUpstream((req) =>
    Response.json({ access_token: `token-for-${req.headers.get("authorization")}-${++n}` })
  );
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    const tokens = [];
    for (const authorization of ["Basic YXBwLWE6c2VjcmV0LWE=", "Basic YXBwLWI6c2VjcmV0LWI="]) {
      const response = await fetch(`${vestibule.url}/_ocap/provider/token`, {
        method: "POST",
        headers: { ...KEY, authorization, "content-type": "application/x-www-form-urlencoded" },
        body: "grant_type=client_credentials",
      });
      assert.equal(response.headers.get("ocap-cache"), "miss", authorization);
      tokens.push((await response.json()).access_token);
    }
    assert.deepEqual(tokens, [
      "token-for-Basic YXBwLWE6c2VjcmV0LWE=-1",
      "token-for-Basic YXBwLWI6c2VjcmV0LWI=-2",
    ]);
    assert.equal(provider.received.length, 2);
  } finally {
    await vestibule.close();
    await provider.close();
    kv.close();
  }
});

Deno.test("OCAP: a target's own ttl_seconds wins over the section's", async () => {
  let clock = Date.now();
  let n = 0;
  const provider = startUpstream(() => Response.json({ access_token: `token-${++n}` }));
  const rules = ocapRules(provider.url, { ttlSeconds: 60 }) as {
    ocap: { targets: { provider: Record<string, unknown> } };
  };
  rules.ocap.targets.provider.ttl_seconds = 5;
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(rules, { env: OCAP_ENV, deps: { kv, now: () => clock } });
  const call = async () => {
    const response = await fetch(tokenRequest(vestibule.url));
    return [response.headers.get("ocap-cache"), (await response.json()).access_token];
  };
  try {
    assert.deepEqual(await call(), ["miss", "token-1"]);
    clock += 4_999 + LEASE_MARGIN_MS; // kept that much longer for clocks that differ
    assert.deepEqual(await call(), ["hit", "token-1"]);
    clock += 1;
    assert.deepEqual(await call(), ["miss", "token-2"], "the section's 60 s were used");
  } finally {
    await vestibule.close();
    await provider.close();
    kv.close();
  }
});

Deno.test("truncated upload over HTTP/2: an OCAP token request its caller cut off without Content-Length never reaches the provider", async (t) => {
  // Deno.serve ends the cut body as if whole (hyperium/hyper#3681): the provider got a truncated
  // code exchange, and its answer was stored as a miss.
  for (
    const [leave, sent] of [["RST_STREAM", 4000], ["connection closed", 4000], [
      "RST_STREAM",
      0,
    ]] as const
  ) {
    await t.step(`${leave}, ${sent} bytes sent`, async () => {
      const provider = startUpstream((_req, got) => Response.json({ got: got.body.length }));
      const kv = await Deno.openKv(":memory:");
      const lines: Record<string, unknown>[] = [];
      const vestibule = startVestibule(ocapRules(provider.url), {
        env: OCAP_ENV,
        deps: { kv, log: (line) => lines.push(JSON.parse(line)) },
      });
      try {
        await h2AbandonUpload(vestibule.url, leave, {
          ":path": "/_ocap/provider/token",
          "ocap-key": OCAP_KEY,
          "content-type": "application/x-www-form-urlencoded",
        }, sent);
        for (let i = 0; i < 100 && lines.length === 0; i++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.deepEqual(provider.received.map((r) => r.body.length), [], JSON.stringify(lines));
        assert.equal(lines[0]?.status, 499);
      } finally {
        await vestibule.close();
        await provider.close();
        kv.close();
      }
    });
  }
});
