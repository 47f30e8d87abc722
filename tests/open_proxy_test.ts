/**
 * OCAP must never be an open proxy: whatever the path, key or request line, it calls a
 * configured target's origin or nothing. A second loopback server plays the host an attacker
 * wants to reach; neither it nor the provider may see a refused request.
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";
import { OCAP_ENV, OCAP_KEY, ocapRules } from "./_ocap.ts";

/** Sends one raw HTTP/1.1 request (so no client normalizes the target) and returns the status. */
async function rawRequest(
  port: number,
  target: string,
  headers: Record<string, string> = {},
): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const all = { Host: `127.0.0.1:${port}`, Connection: "close", ...headers };
    const lines = [`GET ${target} HTTP/1.1`];
    for (const [name, value] of Object.entries(all)) lines.push(`${name}: ${value}`);
    await conn.write(new TextEncoder().encode(`${lines.join("\r\n")}\r\n\r\n`));
    let text = "";
    const buffer = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
    assert.ok(status, `no HTTP status line for ${target}`);
    return Number(status[1]);
  } finally {
    conn.close();
  }
}

async function withServers(
  fn: (ports: { vestibule: number; evil: number }, hits: () => number) => Promise<void>,
): Promise<void> {
  const provider = startUpstream();
  const evil = startUpstream();
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    await fn(
      { vestibule: vestibule.port, evil: evil.port },
      () => provider.received.length + evil.received.length,
    );
    assert.equal(evil.received.length, 0, "the non-target host was reached");
  } finally {
    await vestibule.close();
    await provider.close();
    await evil.close();
    kv.close();
  }
}

const KEY = { "Ocap-Key": OCAP_KEY };

Deno.test("OCAP refuses path tricks that aim at another host or path", async () => {
  await withServers(async ({ vestibule, evil }, hits) => {
    const host = `127.0.0.1:${evil}`;
    const tricks = [
      "/_ocap/provider/../../x",
      "/_ocap/provider/./x",
      "/_ocap/provider/%2e%2e/%2e%2e/x",
      "/_ocap/provider/%2E%2E/x",
      "/_ocap/provider/.%2e/x",
      "/_ocap/provider/..%2F..%2Fx",
      "/_ocap/provider%2F..%2F..%2Fx",
      "/_ocap/provider/a%2Fb",
      "/_ocap/provider/a%5Cb",
      "/_ocap/provider/a%00b",
      `/_ocap/provider@${host}/x`,
      `/_ocap/provider/@${host}/x`,
      `/_ocap/provider/x%40${host}`,
      `/_ocap/provider//${host}/x`,
      `/_ocap//${host}/x`,
      `/_ocap/http://${host}/x`,
      `/_ocap/provider/http://${host}/x`,
      `/_ocap/provider/http:%2F%2F${host}/x`,
      `/_ocap/${host}/x`,
      "/_ocap/../_ocap/provider/x",
    ];
    for (const trick of tricks) {
      const status = await rawRequest(vestibule, trick, KEY);
      // Dot segments resolve first, as for every request: `/_ocap/provider/../../x` is `/x`,
      // the rule table's (its region is down here), never OCAP's.
      const outside = !new URL(trick, "http://h").pathname.startsWith("/_ocap/");
      const expected = outside ? [502] : [400, 404];
      assert.ok(expected.includes(status), `${trick} answered ${status}`);
    }
    assert.equal(hits(), 0);
  });
});

Deno.test("OCAP refuses a missing or wrong key before it looks at the target", async () => {
  await withServers(async ({ vestibule, evil }, hits) => {
    assert.equal(await rawRequest(vestibule, "/_ocap/provider/token"), 401);
    assert.equal(
      await rawRequest(vestibule, "/_ocap/provider/token", { "Ocap-Key": "wrong" }),
      401,
    );
    assert.equal(
      await rawRequest(vestibule, "/_ocap/provider/token", { "Ocap-Key": `${OCAP_KEY}x` }),
      401,
    );
    assert.equal(await rawRequest(vestibule, `/_ocap/127.0.0.1:${evil}/x`), 401);
    assert.equal(await rawRequest(vestibule, "/_ocap/nope/token", KEY), 404);
    assert.equal(hits(), 0);
  });
});

Deno.test("OCAP calls only the configured origin whatever the request line or Host says", async () => {
  const provider = startUpstream();
  const evil = startUpstream();
  const kv = await Deno.openKv(":memory:");
  const vestibule = startVestibule(ocapRules(provider.url), { env: OCAP_ENV, deps: { kv } });
  try {
    const evilHost = `127.0.0.1:${evil.port}`;
    assert.equal(
      await rawRequest(vestibule.port, `http://${evilHost}/_ocap/provider/a`, KEY),
      200,
    );
    assert.equal(
      await rawRequest(vestibule.port, "/_ocap/provider/b", { ...KEY, Host: evilHost }),
      200,
    );
    assert.equal(
      await rawRequest(vestibule.port, `/_ocap/provider/c?next=http://${evilHost}/@x`, KEY),
      200,
    );
    assert.equal(evil.received.length, 0);
    assert.deepEqual(provider.received.map((r) => r.path + r.query), [
      "/a",
      "/b",
      `/c?next=http://${evilHost}/@x`,
    ]);
    for (const r of provider.received) {
      assert.equal(r.headers.get("host"), `127.0.0.1:${provider.port}`);
    }
  } finally {
    await vestibule.close();
    await provider.close();
    await evil.close();
    kv.close();
  }
});
