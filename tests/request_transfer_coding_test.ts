/**
 * @module A request body framed with a transfer coding other than `chunked`: Deno.serve takes off
 * the chunks only and leaves the coding on the bytes, and `Transfer-Encoding` is hop-by-hop, so
 * forwarded as it came the app would get compressed bytes that nothing labels.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { rawRequest, startUpstream, startVestibule } from "./_servers.ts";

Deno.test("unlabelled gzip upload: a request transfer coding other than chunked is 501, never forwarded as raw bytes", async (t) => {
  const up = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [
      // A rule that reads the body: its bytes are replayed upstream from a buffer.
      { name: "search", type: "regional", match: { path: "^/search$", body: { regex: "q" } } },
      { name: "app", type: "regional" },
    ],
  });
  try {
    const coded = gzipSync("name=report.csv&rows=1,2,3");
    for (const path of ["/files/report.csv", "/search"]) {
      await t.step(`${path}, streamed or buffered`, async () => {
        const before = up.received.length;
        const head = `PUT ${path} HTTP/1.1\r\nHost: app.example\r\n` +
          "Content-Type: application/x-www-form-urlencoded\r\n" +
          "Transfer-Encoding: gzip, chunked\r\nAccept: application/json\r\nConnection: close\r\n\r\n" +
          `${coded.length.toString(16)}\r\n`;
        const answer = await rawRequest(edge.port, [head, coded, "\r\n0\r\n\r\n"]);
        // RFC 9112 §6.1: a transfer coding the server does not understand is 501, as nginx
        // answers it ("client sent unknown Transfer-Encoding").
        const got = up.received.slice(before).map((r) => ({
          body: [...r.body.subarray(0, 2)],
          encoding: r.headers.get("content-encoding"),
          transfer: r.headers.get("transfer-encoding"),
        }));
        assert.deepEqual(got, [], `the app got ${JSON.stringify(got)}`);
        assert.match(answer, /^HTTP\/1\.1 501 /);
      });
    }
    await t.step("plain chunked still streams through", async () => {
      const answer = await rawRequest(
        edge.port,
        "PUT /files/a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n" +
          "Connection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.equal(new TextDecoder().decode(up.received.at(-1)!.body), "ok");
    });
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});
