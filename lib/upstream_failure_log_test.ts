import assert from "node:assert/strict";
import { causeText, FAILURE_LINE_EVERY_MS, upstreamFailureLog } from "./upstream_failure_log.ts";

const refused = new TypeError("fetch failed", {
  cause: new Error(
    "error sending request from 127.0.0.1:5 for http://127.0.0.1:9/reset/s3cret?token=abc " +
      "(127.0.0.1:9): client error (Connect): tcp connect error: Connection refused (os error 111)",
  ),
});

Deno.test("upstreamFailureLog() says why, once a second per upstream and error, counting the rest", () => {
  const lines: Record<string, unknown>[] = [];
  let now = 0;
  const report = upstreamFailureLog({ write: (l) => lines.push(JSON.parse(l)), now: () => now });
  report("au", "upstream_unavailable", refused);
  report("au", "upstream_unavailable", refused);
  report("au", "upstream_unavailable", refused);
  report("us", "upstream_unavailable", refused); // another upstream: its own line
  now += FAILURE_LINE_EVERY_MS;
  report("au", "upstream_unavailable", refused);
  assert.deepEqual(lines.map((l) => [l.upstream, l.error, l.suppressed]), [
    ["au", "upstream_unavailable", undefined],
    ["us", "upstream_unavailable", undefined],
    ["au", "upstream_unavailable", 2],
  ]);
  assert.equal(
    lines[0].cause,
    "error sending request from 127.0.0.1:5 (127.0.0.1:9): client error (Connect): tcp connect error: Connection refused (os error 111)",
  );
});

Deno.test("causeText() secret leak: no path, query or URL of the request or a proxy reaches the line", () => {
  for (
    const text of [
      "error sending request for url (http://origin.internal/reset/s3cret?token=abc)",
      "proxy connect to http://user:pa55@proxy:3128/ failed",
    ]
  ) {
    const got = causeText(new TypeError("fetch failed", { cause: new Error(text) }));
    assert.doesNotMatch(got, /s3cret|token|pa55|reset/, got);
  }
});

Deno.test("causeText() of a real refused fetch says why in Deno's words, without the URL or a bracket left open", async (t) => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close(); // nothing listens there now
  // A path or query holding `):` (a client's own text) must not end the URL early either.
  for (
    const target of ["/reset/s3cret?token=abc", "/a):b/s3cret?token=abc", "/x?n=(y):%20z&token=abc"]
  ) {
    await t.step(target, async () => {
      const error = await fetch(`http://127.0.0.1:${port}${target}`).then(
        (res) => res.body?.cancel(),
        (error: unknown) => error,
      );
      assert.equal(
        causeText(error),
        "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
      );
    });
  }
});

const unparsable = new TypeError("fetch failed", {
  cause: new Error("client error: invalid HTTP version parsed"),
});

Deno.test("upstreamFailureLog() gives another kind of failure of one upstream its own line within the second", () => {
  const lines: Record<string, unknown>[] = [];
  const report = upstreamFailureLog({ write: (l) => lines.push(JSON.parse(l)), now: () => 0 });
  report("au", "upstream_unavailable", refused);
  report("au", "upstream_invalid", unparsable);
  assert.deepEqual(lines.map((l) => l.error), ["upstream_unavailable", "upstream_invalid"]);
});

Deno.test("upstreamFailureLog() names no suppressed count when none was suppressed", () => {
  const lines: Record<string, unknown>[] = [];
  let now = 0;
  const report = upstreamFailureLog({ write: (l) => lines.push(JSON.parse(l)), now: () => now });
  report("au", "upstream_unavailable", refused);
  now += 5 * FAILURE_LINE_EVERY_MS;
  report("au", "upstream_unavailable", refused);
  assert.equal(lines.length, 2);
  assert.equal("suppressed" in lines[1], false, JSON.stringify(lines[1]));
});

Deno.test("causeText() masks a URL in any letter case, reads the innermost cause, on one line of at most 500 characters", () => {
  const upper = causeText(
    new TypeError("fetch failed", {
      cause: new Error("proxy connect to HTTP://user:pa55@proxy:3128/ failed"),
    }),
  );
  assert.doesNotMatch(upper, /pa55/, upper);
  const nested = causeText(
    new TypeError("fetch failed", {
      cause: new Error("client error (Connect)", {
        cause: new Error("invalid peer certificate: Expired"),
      }),
    }),
  );
  assert.equal(nested, "invalid peer certificate: Expired");
  const long = causeText(new TypeError("fetch failed", { cause: new Error("x".repeat(5000)) }));
  assert.equal(long.length, 500);
  assert.equal(causeText(new TypeError("a\n\n b")), "a b");
});
