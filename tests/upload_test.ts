/**
 * @module Streamed uploads on a regional route: framing as the client sent it, and what the
 * upstream's `timeout_ms` means for them.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { rawRequest, startUpstream, startVestibule } from "./_servers.ts";
import { h2AbandonUpload, h2Request } from "./_http2.ts";

const TIMEOUT_MS = 300;

function rules(origin: string) {
  return {
    regions: { us: { origin, timeout_ms: TIMEOUT_MS } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  };
}

Deno.test("411 from presigned PUTs: a streamed upload reaches the upstream with the client's Content-Length, not chunked", async (t) => {
  const up = startUpstream((req) =>
    req.headers.has("content-length")
      ? new Response("stored")
      : new Response("MissingContentLength", { status: 411 })
  );
  const edge = startVestibule(rules(up.url));
  try {
    await t.step("Content-Length: 5", async () => {
      const answer = await rawRequest(
        edge.port,
        "PUT /bucket/key HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
      );
      const got = up.received.at(-1)!;
      assert.equal(got.headers.get("content-length"), "5");
      assert.equal(got.headers.get("transfer-encoding"), null);
      assert.equal(new TextDecoder().decode(got.body), "hello");
      assert.match(answer, /^HTTP\/1\.1 200 /);
    });
    for (const method of ["DELETE", "OPTIONS", "POST"]) {
      await t.step(
        `${method} without a body reaches the upstream without one, not chunked`,
        async () => {
          // `curl -X DELETE`, a CORS preflight: neither Content-Length nor Transfer-Encoding, so
          // no body (RFC 9112 §6.3). Deno.serve still hands over a stream, which fetch sent as
          // Transfer-Encoding: chunked. (For a POST, fetch writes Content-Length: 0, as RFC 9110
          // §8.6 asks of a method that defines a body.)
          await rawRequest(
            edge.port,
            `${method} /items/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
          );
          const got = up.received.at(-1)!;
          assert.equal(got.method, method);
          assert.equal(got.headers.get("transfer-encoding"), null);
          assert.equal(got.headers.get("content-length"), method === "POST" ? "0" : null);
          assert.equal(got.body.byteLength, 0);
        },
      );
    }
    await t.step("chunked stays chunked", async () => {
      await rawRequest(
        edge.port,
        "POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
          "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
      );
      const got = up.received.at(-1)!;
      assert.equal(got.headers.get("content-length"), null);
      assert.equal(new TextDecoder().decode(got.body), "abcde");
    });
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

// A body matcher or a broadcast reads the body and sends it from a buffer: the framing must stay
// what the client declared. `fetch` writes Content-Length: 0 for an empty buffer (where none was
// declared), and none for a null body on PATCH, DELETE or OPTIONS (where the client declared an
// empty one; strict servers answer that with 411).
Deno.test("body framing as declared: broadcast regions and a body-matcher rule get no body when none was declared, an empty one when one was", async (t) => {
  const au = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [
      {
        name: "bye",
        type: "broadcast",
        match: { methods: ["DELETE", "PATCH"], path: "^/bye$" },
        success: { status: "2xx" },
        allow_multiple_success: true,
      },
      { name: "empty", type: "regional", match: { path: "^/empty$", body: { regex: "^$" } } },
      { name: "app", type: "regional" },
    ],
  });
  const framings = [
    ["none", "DELETE", "\r\n", null],
    ["Content-Length: 0", "PATCH", "Content-Length: 0\r\n\r\n", "0"],
    ["Transfer-Encoding: chunked", "PATCH", "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "0"],
  ] as const;
  try {
    for (const [framing, method, head, length] of framings) {
      for (const [path, regions] of [["/bye", [au, us]], ["/empty", [us]]] as const) {
        await t.step(
          `${method} ${path}, framing ${framing}: Content-Length ${length}`,
          async () => {
            const before = regions.map((region) => region.received.length);
            const answer = await rawRequest(
              edge.port,
              `${method} ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n${head}`,
            );
            assert.match(answer, /^HTTP\/1\.1 200 /);
            regions.forEach((region, i) => {
              assert.equal(region.received.length, before[i] + 1, "the request reached the region");
              const got = region.received.at(-1)!;
              assert.equal(got.headers.get("content-length"), length);
              assert.equal(got.headers.get("transfer-encoding"), null);
              assert.equal(got.body.byteLength, 0);
            });
          },
        );
      }
    }
    await t.step("PATCH /stream, chunked and unread: stays chunked", async () => {
      await rawRequest(
        edge.port,
        "PATCH /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      );
      const got = us.received.at(-1)!;
      assert.equal(got.path, "/stream");
      assert.equal(got.headers.get("transfer-encoding"), "chunked");
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("bidirectional HTTP/2: a request whose body has not started still reaches the upstream at once", async () => {
  // h2c without Content-Length: the body may come later, even after the answer has begun (gRPC
  // streams, an upstream that refuses an upload by its headers). It must not wait for it.
  const up = startUpstream(() => new Response("early"), { recordBody: false });
  const edge = startVestibule(rules(up.url));
  const client = http2.connect(`http://127.0.0.1:${edge.port}`);
  client.on("error", () => {});
  try {
    const stream = client.request({ ":method": "POST", ":path": "/upload" });
    stream.on("error", () => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      new Promise<number>((resolve) =>
        stream.on("response", (headers) => resolve(Number(headers[":status"])))
      ),
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("no answer"), 2000)),
    ]);
    clearTimeout(timer);
    stream.close(http2.constants.NGHTTP2_CANCEL);
    assert.equal(status, 200, "vestibule waited for the first body byte");
  } finally {
    await new Promise<void>((resolve) => client.close(() => resolve()));
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("stalled upload: 504 after timeout_ms, the upstream call is cancelled, and the server still stops", async () => {
  const upstreamGaveUp = Promise.withResolvers<string>();
  const up = startUpstream(async (req) => {
    const reader = req.body!.getReader();
    // Should the call never be cancelled, the test fails here instead of hanging.
    const timer = setTimeout(() => reader.cancel(), 3000);
    try {
      while (!(await reader.read()).done);
      upstreamGaveUp.resolve("body complete");
    } catch (error) {
      upstreamGaveUp.resolve(`body broke: ${(error as Error).name}`);
    } finally {
      clearTimeout(timer);
    }
    return new Response("never seen");
  }, { recordBody: false });
  const edge = startVestibule(rules(up.url));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
  try {
    const started = performance.now();
    // A tenth of the body, then nothing.
    await conn.write(new TextEncoder().encode(
      "POST /upload HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nContent-Length: 1000\r\n\r\n" +
        "x".repeat(100),
    ));
    const head = new Uint8Array(4096);
    const n = await conn.read(head);
    const elapsed = performance.now() - started;
    const answer = new TextDecoder().decode(head.subarray(0, n ?? 0));
    assert.match(answer, /^HTTP\/1\.1 504 /);
    assert.match(answer, /upstream_timeout/);
    assert.ok(elapsed >= TIMEOUT_MS - 10 && elapsed < TIMEOUT_MS + 400, `after ${elapsed} ms`);
    assert.match(await upstreamGaveUp.promise, /^body broke/);
  } finally {
    conn.close();
    await Promise.all([edge.close(), up.close()]);
  }
});

/**
 * An edge with one streamed rule (`/upload`), a body matcher (`/inspect`) and a broadcast rule
 * (`/everywhere`) over two regions; `leave` runs against it, and the access line and what each
 * origin received come back.
 */
async function afterUpload(send: (edgeUrl: string, edgePort: number) => Promise<unknown>) {
  const us = startUpstream((_req, got) => new Response(`got ${got.body.length}`));
  const eu = startUpstream((_req, got) => new Response(`got ${got.body.length}`));
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { us: { origin: us.url }, eu: { origin: eu.url } },
    default_region: "us",
    rules: [
      { name: "inspect", type: "regional", match: { path: "^/inspect$", body: { regex: "y" } } },
      {
        name: "everywhere",
        type: "broadcast",
        match: { path: "^/everywhere$" },
        success: { status: [200] },
        allow_multiple_success: true,
      },
      { name: "app", type: "regional" },
    ],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)) } });
  try {
    await send(edge.url, edge.port);
    for (let i = 0; i < 100 && lines.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // a late origin request shows too
    const received = [...us.received, ...eu.received].map((r) => ({
      length: r.body.length,
      contentLength: r.headers.get("content-length"),
    }));
    return { line: lines[0], received };
  } finally {
    await Promise.all([edge.close(), us.close(), eu.close()]);
  }
}

Deno.test("truncated upload over HTTP/2: a body cut off by RST_STREAM or a dropped connection never reaches an origin as a whole request", async (t) => {
  // Deno.serve ends the body of an HTTP/2 client that leaves as if it were whole
  // (hyperium/hyper#3681): streamed without a Content-Length, the origin got the bytes so far as
  // a properly ended chunked POST; read for a broadcast or a body matcher, the regions got them
  // with a Content-Length of their own, and the access line said 200. A `host` beside
  // `:authority` leaves the request's signal unmade until vestibule asks (request_view.ts).
  for (const path of ["/upload", "/inspect", "/everywhere"]) {
    for (const declared of [false, true]) {
      for (const leave of ["RST_STREAM", "connection closed"] as const) {
        for (const host of [false, true]) {
          if (path === "/upload" && declared) continue; // client_gone_log_test.ts
          if (host && leave !== "RST_STREAM") continue;
          const name = `${path}, ${
            declared ? "Content-Length: 100000" : "no Content-Length"
          }, ${leave}${host ? ", with a host header" : ""}`;
          await t.step(name, async () => {
            const { line, received } = await afterUpload((url) =>
              h2AbandonUpload(url, leave, {
                ":path": path,
                "content-type": "text/plain",
                ...(declared ? { "content-length": "100000" } : {}),
                ...(host ? { host: new URL(url).host } : {}),
              })
            );
            assert.deepEqual(
              received,
              [],
              `origins processed a cut upload: ${JSON.stringify(line)}`,
            );
            assert.deepEqual(
              { status: line?.status, error: line?.error },
              { status: 499, error: "client_closed" },
            );
          });
        }
      }
    }
  }
  // Before its first DATA frame, the body ends empty: read, it went on as an empty POST.
  for (const path of ["/inspect", "/everywhere"]) {
    for (const leave of ["RST_STREAM", "connection closed"] as const) {
      await t.step(`${path}, no byte sent, ${leave}`, async () => {
        const { line, received } = await afterUpload((url) =>
          h2AbandonUpload(url, leave, { ":path": path, "content-type": "text/plain" }, 0)
        );
        assert.deepEqual(received, [], `origins processed an empty POST: ${JSON.stringify(line)}`);
        assert.deepEqual(
          { status: line?.status, error: line?.error },
          { status: 499, error: "client_closed" },
        );
      });
    }
  }
});

Deno.test("truncated upload over HTTP/2, control: a whole upload without Content-Length still reaches every origin whole", async (t) => {
  for (const path of ["/upload", "/inspect", "/everywhere"]) {
    await t.step(path, async () => {
      const { line, received } = await afterUpload((_url, port) =>
        h2Request(
          port,
          { ":method": "POST", ":path": path, "content-type": "text/plain" },
          "y".repeat(4000),
        )
      );
      assert.equal(line?.status, 200, JSON.stringify(line));
      assert.ok(received.length > 0);
      for (const got of received) assert.equal(got.length, 4000);
    });
  }
});
