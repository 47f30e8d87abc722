/**
 * @module Upstream answers nginx would not pass on as they are: framing that contradicts itself,
 * transfer codings the client would never be told of, statuses no `Response` can hold. Raw TCP
 * upstreams on loopback send the bytes exactly; every case runs where vestibule hands the answer
 * over as it is and where it copies it (a `Set-Cookie`, a hop-by-hop header, a `Location`).
 */
import assert from "node:assert/strict";
import { rawRequest, rawUpstream, startVestibule } from "./_servers.ts";

const COPY_CASES = [
  ["nothing to rewrite", ""],
  ["a Set-Cookie", "Set-Cookie: sessionid=abc; Path=/\r\n"],
  ["Connection: close", "Connection: close\r\n"],
  ["a Location naming the origin", "Location: ORIGIN/next\r\n"],
] as const;

function rules(kind: "regional" | "global", origin: string) {
  return kind === "regional"
    ? { regions: { us: { origin } }, default_region: "us", rules: [{ name: "app", type: kind }] }
    : {
      regions: { us: { origin: "http://127.0.0.1:9" } },
      upstreams: { web: { origin } },
      default_region: "us",
      rules: [{ name: "site", type: kind, upstream: "web" }],
    };
}

/** Every route kind and copy case, against an upstream answering `head` (ORIGIN: its URL). */
async function eachCase(
  t: Deno.TestContext,
  answer: (extra: string) => string,
  check: (reply: { status: number; head: string; body: string }) => void,
): Promise<void> {
  for (const kind of ["regional", "global"] as const) {
    for (const [name, extra] of COPY_CASES) {
      await t.step(`${kind}, ${name}`, async () => {
        const up = rawUpstream((url) => answer(extra.replace("ORIGIN", url)));
        const edge = startVestibule(rules(kind, up.url));
        try {
          const raw = await rawRequest(
            edge.port,
            "GET / HTTP/1.1\r\nHost: app\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
          );
          const end = raw.indexOf("\r\n\r\n");
          const head = raw.slice(0, end).toLowerCase();
          check({ status: Number(head.split(" ")[1]), head, body: raw.slice(end + 4) });
        } finally {
          await Promise.all([edge.close(), up.close()]);
        }
      });
    }
  }
}

Deno.test("response desync: an answer with both Content-Length and chunks reaches the client framed by its chunks", async (t) => {
  await eachCase(
    t,
    (extra) =>
      `HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n${extra}\r\n` +
      "2\r\nok\r\n0\r\n\r\n",
    ({ status, head, body }) => {
      assert.equal(status, 200);
      // RFC 9112 §6.3: the proxy drops the Content-Length; Deno.serve frames it anew.
      assert.doesNotMatch(head, /\r\ncontent-length: 100/, head);
      const bytes = /\r\ntransfer-encoding: chunked/.test(head)
        ? body.replace(/^2\r\nok\r\n0\r\n\r\n$/, "ok")
        : body;
      assert.equal(bytes, "ok");
    },
  );
});

Deno.test("unlabelled gzip: an upstream transfer coding other than chunked is 502 upstream_invalid, not raw bytes", async (t) => {
  // Deno's fetch takes off the chunks and leaves the gzip; Transfer-Encoding is hop-by-hop, so
  // the client got compressed bytes labelled as plain text.
  await eachCase(
    t,
    (extra) =>
      `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n${extra}` +
      "\r\n2\r\nok\r\n0\r\n\r\n",
    ({ status, body }) => {
      assert.equal(status, 502);
      assert.equal(JSON.parse(body).error, "upstream_invalid");
    },
  );
});

Deno.test("framing: 'Transfer-Encoding: , chunked' (an empty list item, RFC 9110 §5.6.1) is chunked, not refused", async (t) => {
  await eachCase(
    t,
    (extra) =>
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: , Chunked\r\n${extra}\r\n2\r\nok\r\n0\r\n\r\n`,
    ({ status, head, body }) => {
      assert.equal(status, 200);
      const bytes = /\r\ntransfer-encoding: chunked/.test(head)
        ? body.replace(/^2\r\nok\r\n0\r\n\r\n$/, "ok")
        : body;
      assert.equal(bytes, "ok");
    },
  );
});

Deno.test("protocol switch nobody asked for: a 101 to a plain request is 502 upstream_invalid", async (t) => {
  // fetch hands the 101 over as the answer; its Upgrade header, hop-by-hop, was dropped.
  await eachCase(
    t,
    (extra) => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n${extra}\r\n`,
    ({ status, body }) => {
      assert.equal(status, 502);
      assert.equal(JSON.parse(body).error, "upstream_invalid");
    },
  );
});

Deno.test("an upstream status above 599 is 502 upstream_invalid, never vestibule's own 500", async (t) => {
  await eachCase(
    t,
    (extra) => `HTTP/1.1 600 Odd\r\n${extra}Content-Length: 2\r\n\r\nok`,
    ({ status, body }) => {
      assert.equal(status, 502);
      assert.equal(JSON.parse(body).error, "upstream_invalid");
    },
  );
});

Deno.test("an upstream's 599 (a proxy's network timeout) is passed on as 599, not 502 upstream_invalid", async (t) => {
  await eachCase(
    t,
    (extra) => `HTTP/1.1 599 Network Connect Timeout Error\r\n${extra}Content-Length: 2\r\n\r\nok`,
    ({ status, body }) => {
      assert.equal(status, 599);
      assert.equal(body, "ok");
    },
  );
});

Deno.test("an origin whose answer does not parse is 502 upstream_invalid in the answer and the log, not a region that looks down", async (t) => {
  const cases: [string, string, string][] = [
    [
      "120 header lines",
      "HTTP/1.1 200 OK\r\n" + "X-Tag: v\r\n".repeat(120) + "Content-Length: 2\r\n\r\nok",
      "upstream_invalid",
    ],
    [
      "a folded header",
      "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
      "upstream_invalid",
    ],
    ["another HTTP version", "HTTP/9.9 200 OK\r\nContent-Length: 2\r\n\r\nok", "upstream_invalid"],
    ["not HTTP at all", "SSH-2.0-OpenSSH_9.6\r\n\r\n", "upstream_invalid"],
    // No answer at all: that one is down.
    ["closed without an answer", "", "upstream_unavailable"],
  ];
  for (const [what, answer, error] of cases) {
    await t.step(what, async () => {
      const up = rawUpstream(() => answer);
      const lines: string[] = [];
      const edge = startVestibule(rules("regional", up.url), {
        deps: { log: (line) => lines.push(line) },
      });
      try {
        const res = await fetch(`${edge.url}/`, { headers: { accept: "application/json" } });
        assert.deepEqual([res.status, (await res.json()).error], [502, error]);
        assert.equal(JSON.parse(lines.at(-1)!).error, error);
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
});
