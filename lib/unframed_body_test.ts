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
});
