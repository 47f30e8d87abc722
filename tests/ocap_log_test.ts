/** What OCAP answers and logs for requests it refuses or answers itself, as the router would. */
import assert from "node:assert/strict";
import {
  DEAD_ORIGIN,
  firstAnswer,
  rawRequest,
  rawUpstream,
  startUpstream,
  startVestibule,
} from "./_servers.ts";
import { OCAP_ENV, OCAP_KEY, ocapRules, tokenRequest } from "./_ocap.ts";

/** An edge with OCAP in front of `provider`, its access lines collected. */
async function withLoggedOcap(
  provider: { url: string; close(): Promise<void> },
  fn: (edge: ReturnType<typeof startVestibule>, lines: string[]) => Promise<void>,
): Promise<void> {
  const kv = await Deno.openKv(":memory:");
  const lines: string[] = [];
  const edge = startVestibule(ocapRules(provider.url), {
    env: OCAP_ENV,
    deps: { kv, log: (line) => lines.push(line) },
  });
  try {
    await fn(edge, lines);
  } finally {
    await edge.close();
    await provider.close();
    kv.close();
  }
}

Deno.test("OCAP methods: TRACE/TRACK and lower-case methods are refused as the router refuses them, not sent or blamed on the provider", async (t) => {
  const upstream = startUpstream(() => new Response("x".repeat(1234)));
  await withLoggedOcap(upstream, async (edge, lines) => {
    for (const method of ["TRACE", "TRACK"]) {
      await t.step(`${method}: 405 method_not_allowed, not 502 upstream_unavailable`, async () => {
        const answer = await rawRequest(
          edge.port,
          `${method} /_ocap/provider/token HTTP/1.1\r\nHost: edge.test\r\n` +
            `Ocap-Key: ${OCAP_KEY}\r\nConnection: close\r\n\r\n`,
        );
        const log = JSON.parse(lines.at(-1)!);
        assert.equal(answer.split("\r\n")[0], "HTTP/1.1 405 Method Not Allowed", answer);
        assert.equal(log.error, "method_not_allowed");
      });
    }
    await t.step("lower-case head: 400 bad_method, not a Content-Length with no body", async () => {
      const { answer } = await firstAnswer(
        edge.port,
        `head /_ocap/provider/doc HTTP/1.1\r\nHost: edge.test\r\n` +
          `Ocap-Key: ${OCAP_KEY}\r\nConnection: close\r\n\r\n`,
        2000,
      );
      assert.equal(answer.split("\r\n")[0], "HTTP/1.1 400 Bad Request", answer);
      assert.equal(upstream.received.length, 0, "nothing reaches the provider");
    });
  });
});

Deno.test("OCAP access line: a shared 502 upstream_invalid carries its error code", async () => {
  const origin = rawUpstream(() =>
    "HTTP/1.1 600 Weird\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
  );
  await withLoggedOcap(origin, async (edge, lines) => {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(tokenRequest(edge.url));
      assert.equal(res.status, 502);
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.equal((await res.json()).error, "upstream_invalid");
    }
    const logged = lines.map((line) => JSON.parse(line));
    assert.deepEqual(logged.map((l) => [l.status, l.error]), [
      [502, "upstream_invalid"],
      [502, "upstream_invalid"],
    ]);
  });
});

Deno.test("OCAP access line: bytes is the Content-Length the caller got", async () => {
  const upstream = startUpstream(() => Response.json({ access_token: "t" }));
  await withLoggedOcap(upstream, async (edge, lines) => {
    const res = await fetch(tokenRequest(edge.url));
    const body = await res.text();
    assert.equal(res.headers.get("content-length"), String(body.length));
    const line = JSON.parse(lines.at(-1)!);
    assert.equal(line.status, 200);
    assert.equal(line.bytes, body.length, lines.at(-1));
  });
});

Deno.test("log leak: an OCAP access line has the path only, never the query's secrets", async () => {
  const upstream = startUpstream(() => Response.json({ access_token: "t" }));
  await withLoggedOcap(upstream, async (edge, lines) => {
    const secret = "cl13nt-s3cr3t-q7";
    const res = await fetch(
      tokenRequest(edge.url, { path: `/_ocap/provider/token?client_secret=${secret}` }),
    );
    assert.equal(res.status, 200, await res.text());
    assert.equal(upstream.received[0].query, `?client_secret=${secret}`, "the provider got it");
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]).path, "/_ocap/provider/token");
    assert.ok(!lines[0].includes(secret) && !lines[0].includes("client_secret"), lines[0]);
  });
});

Deno.test("upstream failed: why an OCAP target is unavailable is on stderr, without the code or the query", async () => {
  const written: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void written.push(args.map(String).join(" "));
  const kv = await Deno.openKv(":memory:");
  const rules = ocapRules("http://127.0.0.1:9", { otherUrl: DEAD_ORIGIN });
  const edge = startVestibule(rules, { env: OCAP_ENV, deps: { kv, log: () => {} } });
  try {
    const res = await fetch(tokenRequest(edge.url, { path: "/_ocap/other/token?state=s3cret" }));
    await res.body?.cancel();
    assert.equal(res.status, 502);
  } finally {
    console.error = original;
    await edge.close();
    kv.close();
  }
  const lines = written.filter((l) => l.includes('"upstream failed"')).map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => [l.upstream, l.error]), [["other", "upstream_unavailable"]]);
  assert.match(lines[0].cause, /refused/i);
  assert.doesNotMatch(written.join("\n"), /s3cret|one-time-code/);
});
