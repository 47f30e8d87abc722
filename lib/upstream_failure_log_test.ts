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
