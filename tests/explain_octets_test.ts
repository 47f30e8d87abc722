/**
 * explain given the octets the router sees (a `Headers` object, which explainRequest takes as
 * "already holding octets", or `-H` with a control character): a control octet Deno.serve refuses
 * with a bare 400, and the A0, VT and FF octets JavaScript's `trim()` takes for spaces, which the
 * router keeps as part of a Cookie or Host value.
 */
import assert from "node:assert/strict";
import { oneRegion, rawRequest, startUpstream, startVestibule, twoRegions } from "./_servers.ts";
import { parseRules } from "../lib/load_rules.ts";
import { explainRequest } from "../lib/explain.ts";

const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

/** The status of the router's answer to `head`, sent octet by octet. */
async function routerStatus(port: number, head: string): Promise<number> {
  const answer = await rawRequest(port, [latin1(head)]);
  return Number(answer.split(" ")[1]);
}

function stack() {
  const au = startUpstream();
  const us = startUpstream();
  const rules = twoRegions(au.url, us.url);
  const edge = startVestibule(rules);
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  return { au, us, edge, config, close: () => Promise.all([edge.close(), au.close(), us.close()]) };
}

Deno.test("explain: a header value with a control octet Deno.serve refuses is its 400 in explain too", async () => {
  // `deno task explain -- GET … -H $'X-Note: a\x0cb'` routed it; trim() then also took the FF
  // off a Cookie, and explain printed a pin the router never read.
  const s = stack();
  try {
    const wrong: string[] = [];
    const octets = [...Array(0x20).keys()].filter((b) => ![0, 9, 10, 13].includes(b));
    for (const b of [...octets, 0x7f]) {
      const value = `a${String.fromCharCode(b)}b`;
      const router = await routerStatus(
        s.edge.port,
        `GET /x HTTP/1.1\r\nHost: app.example.com\r\nX-Note: ${value}\r\nConnection: close\r\n\r\n`,
      );
      const e = await explainRequest(
        { method: "GET", url: "http://app.example.com/x", headers: [["X-Note", value]] },
        s.config,
      );
      const explained = e.refused?.status ?? 200;
      if (router !== explained) {
        wrong.push(`0x${b.toString(16)}: router ${router}, explain ${explained}`);
      }
    }
    assert.deepEqual(wrong, []);
  } finally {
    await s.close();
  }
});

Deno.test("explain: a Cookie line starting with an A0 octet pins nothing, in the router as in explain", async () => {
  const s = stack();
  try {
    const cookie = "\xA0__Host-vestibule-region=au";
    assert.equal(
      await routerStatus(
        s.edge.port,
        `GET /x HTTP/1.1\r\nHost: app.example.com\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`,
      ),
      200,
    );
    assert.deepEqual([s.au.received.length, s.us.received.length], [0, 1]);
    const e = await explainRequest(
      {
        method: "GET",
        url: "http://app.example.com/x",
        headers: new Headers([["cookie", cookie]]),
      },
      s.config,
    );
    assert.deepEqual({ region: e.region, reason: e.reason }, { region: "us", reason: "default" });
  } finally {
    await s.close();
  }
});

Deno.test("explain: vestibule's own path under a Host with an A0 or FF octet is the router's 400, not served", async (t) => {
  const us = startUpstream();
  const rules = oneRegion(us.url);
  const edge = startVestibule(rules);
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  try {
    for (
      const [what, host] of [
        ["A0 after", "app.example.com\xA0"],
        ["A0 before", "\xA0app.example.com"],
        ["FF after", "app.example.com\x0C"],
      ]
    ) {
      await t.step(what, async () => {
        const router = await routerStatus(
          edge.port,
          `GET /_vestibule/health HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
        );
        const e = await explainRequest({
          method: "GET",
          url: "http://app.example.com/_vestibule/health",
          headers: new Headers([["host", host]]),
        }, config);
        assert.equal(router, 400);
        assert.deepEqual({ status: e.refused?.status, servedBy: e.servedBy }, {
          status: 400,
          servedBy: undefined,
        });
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});
