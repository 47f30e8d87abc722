import assert from "node:assert/strict";
import { MAX_FORM_FIELDS } from "./multipart_fields.ts";
import { mediaTypeParameter } from "./media_type.ts";
import {
  BodyTooLargeError,
  BufferedBody,
  joinChunks,
  readBounded,
  readUpTo,
} from "./request_body.ts";
import { leastCpuMs } from "../tests/_cpu_time.ts";

Deno.test("mediaTypeParameter() reads parameters pair by pair, as Python's email does", () => {
  const charset = (type: string) => mediaTypeParameter(type, "charset");
  assert.equal(charset("text/plain; charset=iso-8859-1"), "iso-8859-1");
  assert.equal(charset('text/plain; Charset="ISO-8859-1"'), "ISO-8859-1");
  assert.equal(charset('text/plain; x="; charset=utf-16le"'), undefined);
  assert.equal(charset('text/plain; x="a\\"; charset=b"; charset=utf-8'), "utf-8");
  assert.equal(charset("text/plain; x; charset=latin1"), "latin1");
  assert.equal(charset('text/plain; x="open; charset=latin1'), undefined);
  assert.equal(charset("text/plain"), undefined);
});

Deno.test("CPU exhaustion: mediaTypeParameter() reads a 64 KB Content-Type of empty parameters in linear time", () => {
  const fastest = (value: string) => {
    let best = Infinity;
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      mediaTypeParameter(value, "charset");
      best = Math.min(best, performance.now() - started);
    }
    return best;
  };
  // Same length and number of `;`; searching the rest for `=` from every `;` took 28 times as long.
  const usual = fastest("text/plain" + "; a=b".repeat(12_800));
  const empty = fastest("text/plain" + ";".repeat(63_997) + "a=b");
  assert.ok(empty < 10 * usual + 5, `${empty.toFixed(1)} ms vs ${usual.toFixed(1)} ms`);
});

Deno.test("memory amplification: readUpTo() keeps one buffer, not each chunk's own 64 KiB", async () => {
  // As Deno.serve hands over a chunked upload: every chunk a view into a 64 KiB buffer of its own.
  const chunks = 3000;
  const body = new ReadableStream<Uint8Array<ArrayBuffer>>({
    start(controller) {
      for (let i = 0; i < chunks; i++) {
        const view = new Uint8Array(new ArrayBuffer(65536), 0, 1);
        view[0] = i % 256;
        controller.enqueue(view);
      }
      controller.close();
    },
  });
  const read = await readUpTo(body, 1 << 20, { ms: 30_000, error: () => new Error("late") });
  assert.equal(read.total, chunks);
  const held = new Set(read.chunks.map((c) => c.buffer));
  const bytes = [...held].reduce((sum, buffer) => sum + buffer.byteLength, 0);
  assert.ok(bytes <= 65536, `${bytes} bytes held for ${chunks} body bytes`);
  assert.deepEqual([...joinChunks(read.chunks, read.total)].slice(0, 3), [0, 1, 2]);
  assert.equal(joinChunks(read.chunks, read.total)[2999], 2999 % 256);
});

Deno.test("readUpTo() keeps a body that is one chunk as it is, and times out a stalled one", async () => {
  const only = new Uint8Array([1, 2, 3]);
  const one = await readUpTo(new Response(only).body!, 10);
  assert.equal(one.chunks.length, 1);
  const stalled = new ReadableStream<Uint8Array<ArrayBuffer>>({
    start(controller) {
      controller.enqueue(new Uint8Array([1]));
    },
  });
  await assert.rejects(
    readUpTo(stalled, 10, { ms: 50, error: () => new RangeError("body too slow") }),
    { name: "RangeError", message: "body too slow" },
  );
});

/** The form fields of `body` as a `form` matcher reads them. */
function formOf(contentType: string, body: string): Promise<Map<string, string[]> | undefined> {
  const request = new Request("http://app.test/", {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });
  return new BufferedBody(request, 1 << 21).form();
}

const MULTIPART = "multipart/form-data; boundary=b";
const parts = (n: number) =>
  '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n'.repeat(n) + "--b--\r\n";

Deno.test("BufferedBody.form(): a form of more than MAX_FORM_FIELDS fields is no form (Django refuses it too)", async (t) => {
  await t.step("urlencoded", async () => {
    const fields = (n: number) => Array(n).fill("a=x").join("&");
    assert.equal(
      (await formOf("application/x-www-form-urlencoded", fields(MAX_FORM_FIELDS)))?.get("a")
        ?.length,
      MAX_FORM_FIELDS,
    );
    assert.equal(
      await formOf("application/x-www-form-urlencoded", fields(MAX_FORM_FIELDS + 1)),
      undefined,
    );
  });
  await t.step("multipart", async () => {
    assert.equal(
      (await formOf(MULTIPART, parts(MAX_FORM_FIELDS)))?.get("a")?.length,
      MAX_FORM_FIELDS,
    );
    assert.equal(await formOf(MULTIPART, parts(MAX_FORM_FIELDS + 1)), undefined);
  });
  await t.step("multipart after a preamble: still a form at the limit", async () => {
    const form = await formOf(MULTIPART, "a preamble\r\n" + parts(MAX_FORM_FIELDS));
    assert.equal(form?.get("a")?.length, MAX_FORM_FIELDS);
  });
});

Deno.test("CPU amplification: 1 MiB of empty form fields costs a form matcher about what one 1 MiB field does", async (t) => {
  const fastest = (contentType: string, body: string) =>
    leastCpuMs(() => formOf(contentType, body));
  const size = 1 << 20;
  await t.step("urlencoded a&a&…: 0.2–0.3 s before the cap", async () => {
    const one = await fastest("application/x-www-form-urlencoded", "a=" + "x".repeat(size - 2));
    const many = await fastest("application/x-www-form-urlencoded", "a&".repeat(size / 2));
    assert.ok(many < 10 * one + 5, `${many.toFixed(1)} ms vs ${one.toFixed(1)} ms`);
  });
  // About 1 s before the cap, 0.3 s with busboy's own limit alone, whatever the spelling of the
  // boundary (busboy reads `boundary*=` and drops spaces outside quotes).
  for (
    const type of [
      MULTIPART,
      "multipart/form-data; boundary*=utf-8''b",
      "multipart/form-data; bound ary=b",
      'multipart/form-data; boundary="b"',
    ]
  ) {
    await t.step(`multipart of empty parts, ${type}`, async () => {
      const head = '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n';
      const one = await fastest(type, head + "x".repeat(size - head.length - 12) + "\r\n--b--\r\n");
      const many = await fastest(type, "--b\r\n\r\n\r\n".repeat(size / 11) + "--b--\r\n");
      assert.ok(many < 10 * one + 5, `${many.toFixed(1)} ms vs ${one.toFixed(1)} ms`);
    });
  }
  await t.step("multipart: a 128 KiB field first, then empty parts", async () => {
    // busboy holds a write back while a large field fills its stream: slices written meanwhile
    // were queued and all parsed, past the limit, at once (0.63 s).
    const head = '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n';
    const one = await fastest(
      MULTIPART,
      head + "x".repeat(size - head.length - 12) + "\r\n--b--\r\n",
    );
    const big = head + "x".repeat(128 * 1024) + "\r\n";
    const empty = "--b\r\n\r\n\r\n";
    const fill = empty.repeat(Math.floor((size - big.length - 7) / empty.length));
    const many = await fastest(MULTIPART, big + fill + "--b--\r\n");
    assert.ok(many < 10 * one + 5, `${many.toFixed(1)} ms vs ${one.toFixed(1)} ms`);
  });
});

/** A request whose body arrives in chunks of the given sizes, with no Content-Length. */
function chunked(sizes: number[]): Request {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const size of sizes) controller.enqueue(new Uint8Array(size).fill(0x61));
      controller.close();
    },
  });
  return new Request("http://app.test/up", { method: "POST", body, duplex: "half" } as RequestInit);
}

Deno.test("memory limit: body_limit_bytes holds to the byte for a chunked body (no Content-Length)", async (t) => {
  await t.step("exactly the limit is read whole", async () => {
    assert.equal((await new BufferedBody(chunked([4, 6]), 10).bytes()).byteLength, 10);
  });
  await t.step("one byte over is 413 body_too_large", async () => {
    await assert.rejects(new BufferedBody(chunked([4, 7]), 10).bytes(), BodyTooLargeError);
  });
  await t.step("one byte over in a single chunk too", async () => {
    await assert.rejects(new BufferedBody(chunked([11]), 10).bytes(), BodyTooLargeError);
  });
});

Deno.test("wrong status: a body that breaks off is 499 client_closed, not a 500", async () => {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array(3));
      controller.error(new TypeError("connection reset"));
    },
  });
  const request = new Request(
    "http://app.test/up",
    { method: "POST", body, duplex: "half" } as RequestInit,
  );
  await assert.rejects(
    new BufferedBody(request, 1024).bytes(),
    (error: { status?: number; code?: string }) =>
      error.status === 499 && error.code === "client_closed",
  );
});

/** A POST whose body ends cleanly after "abc", as Deno.serve ends an HTTP/2 body cut off. */
function cutRequest(headers: Record<string, string>, client = new AbortController()): Request {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode("abc"));
      controller.close();
      setTimeout(() => client.abort(), 0); // Deno.serve aborts the signal a macrotask later
    },
  });
  return new Request(
    "http://app.test/up",
    { method: "POST", body, headers, signal: client.signal, duplex: "half" } as RequestInit,
  );
}

Deno.test("truncated upload over HTTP/2: a read body that ended because its client left is 499 client_closed, not the bytes so far", async (t) => {
  const isClientClosed = (error: { status?: number; code?: string }) =>
    error.status === 499 && error.code === "client_closed";
  await t.step("short of its Content-Length", async () => {
    const request = cutRequest({ "content-length": "1000" }, new AbortController());
    await assert.rejects(new BufferedBody(request, 1024).bytes(), isClientClosed);
  });
  await t.step("no Content-Length: the client's signal aborts at the end", async () => {
    await assert.rejects(new BufferedBody(cutRequest({}), 1024).bytes(), isClientClosed);
  });
  await t.step("control: a whole body of its Content-Length is read", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("abc"));
        controller.close();
      },
    });
    const request = new Request(
      "http://app.test/up",
      { method: "POST", body, headers: { "content-length": "3" }, duplex: "half" } as RequestInit,
    );
    assert.equal(new TextDecoder().decode(await new BufferedBody(request, 1024).bytes()), "abc");
  });
});

/** `n` chunks of `size` bytes, each its own buffer, as Deno.serve hands a chunked upload over. */
function chunks(n: number, size: number): ReadableStream<Uint8Array<ArrayBuffer>> {
  let left = n;
  return new ReadableStream({
    pull(controller) {
      if (left-- > 0) controller.enqueue(new Uint8Array(size));
      else controller.close();
    },
  });
}

Deno.test("CPU amplification: a body read in many small chunks costs time linear in its size, not quadratic", async () => {
  // As many reads, 16 times the bytes: about the same cost when the buffer grows by doubling;
  // grown a chunk at a time, each chunk copied everything before it (258 ms against 54 ms).
  const n = 4096;
  const small = await leastCpuMs(() => readUpTo(chunks(n, 16), 1 << 21));
  const large = await leastCpuMs(() => readUpTo(chunks(n, 256), 1 << 21));
  assert.ok(
    large < 4 * small + 20,
    `${large.toFixed(1)} ms for 1 MiB, ${small.toFixed(1)} ms for 64 KiB`,
  );
});

Deno.test("slowloris: readBounded() refuses a declared Content-Length over the limit before reading any of it", async () => {
  let pulled = 0;
  const never = new ReadableStream<Uint8Array<ArrayBuffer>>({
    pull(controller) {
      if (pulled++ === 0) controller.enqueue(new Uint8Array(4));
      return new Promise(() => {}); // the rest never comes (a slow or stalled upload)
    },
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const verdict = await Promise.race([
    readBounded(never, 10, "1000000").then(() => "read", (e) => e),
    new Promise((resolve) => timer = setTimeout(resolve, 1000, "still waiting")),
  ]);
  clearTimeout(timer);
  assert.ok(verdict instanceof BodyTooLargeError, `got ${verdict}`);
});

Deno.test("readBounded(): a body even one byte short of its Content-Length is a client that left (499), not a whole body", async () => {
  const nine = () =>
    new Blob([new Uint8Array(9)]).stream() as ReadableStream<Uint8Array<ArrayBuffer>>;
  await assert.rejects(readBounded(nine(), 100, "10"), { status: 499 });
  assert.equal((await readBounded(nine(), 100, "9")).byteLength, 9);
});

Deno.test("slowloris: body_timeout_ms fires on time for a stalled body, not at twice the time", async () => {
  const stalled = new ReadableStream<Uint8Array<ArrayBuffer>>({
    start(controller) {
      controller.enqueue(new Uint8Array([1])); // one byte, then nothing: a slowloris upload
    },
  });
  const started = performance.now();
  await assert.rejects(readBounded(stalled, 1024, null, 1000), { status: 408 });
  const took = performance.now() - started;
  // Wide enough for a busy machine, still short of the doubled window a wrong timer would give.
  assert.ok(took >= 950 && took < 1900, `408 after ${Math.round(took)} ms, wanted about 1000`);
});

Deno.test("a multipart base64 field 'YQ=' (Python raises: Incorrect padding) has no decoded copy", async () => {
  const body = "--B\r\nContent-Disposition: form-data; name=a\r\n" +
    "Content-Transfer-Encoding: base64\r\n\r\nYQ=\r\n--B--\r\n";
  const request = new Request("http://app.test/", {
    method: "POST",
    headers: { "content-type": "multipart/form-data; boundary=B" },
    body,
  });
  const fields = await new BufferedBody(request, 1 << 21).form();
  assert.deepEqual(fields?.get("a"), ["YQ="]);
  // Three characters unpadded: Python raises too, so the raw text is the only copy.
  const unpadded = body.replace("YQ=", "YWJ");
  assert.deepEqual(
    await formOf("multipart/form-data; boundary=B", unpadded),
    new Map([["a", ["YWJ"]]]),
  );
});

Deno.test("a multipart part that names its filename twice is no form: busboy keeps the first, Django the last", async () => {
  const part = (disposition: string) =>
    `--b\r\nContent-Disposition: ${disposition}\r\n\r\ndelete\r\n--b--\r\n`;
  // A file to busboy ("a.txt"); a plain field `action` to Django, whose last filename is empty.
  assert.equal(
    await formOf(MULTIPART, part('form-data; name="action"; filename="a.txt"; filename=""')),
    undefined,
  );
  assert.deepEqual(
    await formOf(MULTIPART, part('form-data; name="action"')),
    new Map([["action", ["delete"]]]),
  );
});
