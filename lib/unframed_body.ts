/** @module The body of a request that declared none: no `Content-Length`, no `Transfer-Encoding`. */
import { clientClosed } from "./request_body.ts";

/**
 * `stream`, or `null` when it turns out empty. Over HTTP/1.1 a request with neither header has
 * no body (RFC 9112 §6.3: `curl -X DELETE`, a CORS preflight), yet `Deno.serve` hands it over as
 * an empty stream, which `fetch` sent upstream as `Transfer-Encoding: chunked`, a framing the
 * client never chose (servers that refuse chunked requests answer 411). Over HTTP/2 such a
 * request may still carry a body, so the first bytes decide, and they go ahead of the rest.
 * @throws {HttpError} 499 `client_closed` when the client hangs up before that read ends
 */
export async function unlessEmpty(
  stream: ReadableStream<Uint8Array>,
): Promise<ReadableStream<Uint8Array> | null> {
  const reader = stream.getReader();
  let first: ReadableStreamReadResult<Uint8Array>;
  try {
    // Deno.serve's stream of an absent body yields one empty chunk before it ends.
    do first = await reader.read(); while (!first.done && first.value.byteLength === 0);
  } catch (error) {
    throw clientClosed(error);
  }
  if (first.done) return null;
  let head: Uint8Array | undefined = first.value;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (head) {
        controller.enqueue(head);
        head = undefined;
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
