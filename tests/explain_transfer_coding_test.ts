/**
 * Explain's prediction for a request's Transfer-Encoding: Deno.serve itself answers a bare 400
 * to codings it cannot frame (`chunked, chunked`, `gzip` alone, `identity, chunked`), before
 * vestibule sees the request; explain said 501 `transfer_coding_not_implemented` for those, an
 * answer the client never gets and the access log never shows.
 */
import assert from "node:assert/strict";
import { explainRequest } from "../lib/explain.ts";
import { rawRequest, routerAndRules } from "./_servers.ts";

Deno.test("explainRequest() predicts the status a request with each Transfer-Encoding gets", async (t) => {
  const { us: up, edge, config } = routerAndRules();
  try {
    const codings = [
      "chunked",
      "Chunked",
      "gzip, chunked",
      "chunked, chunked",
      "chunked, gzip",
      "gzip",
      "identity, chunked",
    ];
    for (const coding of codings) {
      await t.step(coding, async () => {
        const answer = await rawRequest(
          edge.port,
          `POST /x HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: ${coding}\r\n` +
            "Connection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        );
        const got = Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1]);
        const explained = await explainRequest({
          method: "POST",
          url: "http://app.example/x",
          headers: { "transfer-encoding": coding },
          body: "ok",
        }, config);
        assert.equal(explained.refused?.status ?? 200, got, JSON.stringify(explained.refused));
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});
