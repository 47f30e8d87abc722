import assert from "node:assert/strict";
import { HttpError } from "./http_error.ts";
import { unlessEmpty } from "./unframed_body.ts";

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  const bytes = chunks.map((chunk) => new TextEncoder().encode(chunk));
  return new ReadableStream({
    pull(controller) {
      const next = bytes.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
}

Deno.test("unlessEmpty()", async (t) => {
  await t.step("an empty stream (Deno.serve yields one empty chunk) is no body", async () => {
    assert.equal(await unlessEmpty(streamOf()), null);
    assert.equal(await unlessEmpty(streamOf("", "")), null);
  });

  await t.step("a body (HTTP/2 needs neither header) is kept whole, in order", async () => {
    const body = await unlessEmpty(streamOf("", "ab", "", "cd", "e"));
    assert.ok(body);
    assert.equal(await new Response(body).text(), "abcde");
  });

  await t.step("cancelling the result cancels the client's stream", async () => {
    let reason: unknown;
    const source = new ReadableStream<Uint8Array>({
      start: (controller) => controller.enqueue(new Uint8Array([1])),
      cancel: (why) => void (reason = why),
    });
    const body = await unlessEmpty(source);
    await body!.cancel("upstream gone");
    assert.equal(reason, "upstream gone");
  });

  await t.step("a client gone before its first bytes is 499 client_closed", async () => {
    const broken = new ReadableStream<Uint8Array>({
      pull: (controller) => controller.error(new TypeError("connection reset")),
    });
    await assert.rejects(
      unlessEmpty(broken),
      (error: unknown) => error instanceof HttpError && error.status === 499,
    );
  });

  await t.step(
    "a body that has not started within the wait goes on as it is, nothing lost",
    async () => {
      let start!: ReadableStreamDefaultController<Uint8Array>;
      const source = new ReadableStream<Uint8Array>({ start: (c) => void (start = c) });
      const body = await unlessEmpty(source, 5); // Before any byte: HTTP/2's client may wait.
      assert.ok(body);
      start.enqueue(new TextEncoder().encode("late "));
      start.enqueue(new TextEncoder().encode("bytes"));
      start.close();
      assert.equal(await new Response(body).text(), "late bytes");
    },
  );

  await t.step("one that turns out empty after the wait is an empty body", async () => {
    let start!: ReadableStreamDefaultController<Uint8Array>;
    const body = await unlessEmpty(new ReadableStream({ start: (c) => void (start = c) }), 5);
    start.close();
    assert.equal((await new Response(body).arrayBuffer()).byteLength, 0);
  });

  await t.step("a client gone after the wait errors the body, unread or read", async () => {
    let start!: ReadableStreamDefaultController<Uint8Array>;
    const unread = await unlessEmpty(new ReadableStream({ start: (c) => void (start = c) }), 5);
    assert.ok(unread);
    // Never pulled (the upstream call failed first): no unhandled rejection ends the process.
    start.error(new TypeError("connection reset"));
    await new Promise((resolve) => setTimeout(resolve, 5));
    const read = await unlessEmpty(new ReadableStream({ start: (c) => void (start = c) }), 5);
    start.error(new TypeError("connection reset"));
    await assert.rejects(new Response(read).text(), /connection reset/);
  });
});

Deno.test("truncated upload over HTTP/2: unlessEmpty() errors a body whose client's signal aborts as it ends, instead of ending it", async (t) => {
  await t.step("the client left: the body errors", async () => {
    const client = new AbortController();
    const source = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("abc"));
        controller.close();
        setTimeout(() => client.abort(), 0); // Deno.serve aborts the signal a macrotask later
      },
    });
    const body = await unlessEmpty(source, 5, client);
    await assert.rejects(new Response(body).text());
  });
  await t.step("control: a client still there gets its body whole", async () => {
    const body = await unlessEmpty(streamOf("ab", "c"), 5, new AbortController());
    assert.equal(await new Response(body).text(), "abc");
  });
});
