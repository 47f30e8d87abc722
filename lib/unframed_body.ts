/** @module The body of a request that declared none: no `Content-Length`, no `Transfer-Encoding`. */
import type { HeaderReader } from "./header_list.ts";
import { CLIENT_CUT_BODY, clientClosed, clientCut } from "./request_body.ts";

/** Whether the request declared a body: a `Content-Length` or a `Transfer-Encoding`. */
export function declaresBody(headers: HeaderReader): boolean {
  return headers.get("content-length") !== null || headers.get("transfer-encoding") !== null;
}

/**
 * A buffered body as the upstream should get it: none for a request that declared none and
 * had none, so `fetch` does not add the `Content-Length: 0` it writes for an empty one.
 */
export function bufferedBody(
  bytes: Uint8Array<ArrayBuffer>,
  headers: HeaderReader,
): Uint8Array<ArrayBuffer> | null {
  return bytes.byteLength === 0 && !declaresBody(headers) ? null : bytes;
}

/**
 * How long {@linkcode unlessEmpty} waits to learn whether such a body is empty. Over HTTP/1.1 the
 * answer is there at once; an HTTP/2 body that has not started by then is passed on as it is.
 */
export const PEEK_MS = 20;

/**
 * `stream`, or `null` when it turns out empty. Over HTTP/1.1 a request with neither header has
 * no body (RFC 9112 §6.3: `curl -X DELETE`, a CORS preflight), yet `Deno.serve` hands it over as
 * an empty stream, which `fetch` sent upstream as `Transfer-Encoding: chunked`, a framing the
 * client never chose (servers that refuse chunked requests answer 411). Over HTTP/2 (which
 * `Deno.serve` does not tell apart) such a request may carry a body, even one its client sends
 * only after the answer has begun: so the wait is bounded by `peekMs`, after which the stream
 * goes upstream as before, and bytes read meanwhile go ahead of the rest.
 *
 * Such a body, HTTP/2's, ends cleanly when its client resets the stream or drops the connection
 * (hyperium/hyper#3681): the origin got the bytes so far as a whole chunked body. With `client`
 * (the request), the stream errors instead when the client's signal says it left
 * ({@linkcode clientCut}).
 * @throws {HttpError} 499 `client_closed` when the client hangs up within that wait
 */
export async function unlessEmpty(
  stream: ReadableStream<Uint8Array>,
  peekMs = PEEK_MS,
  client?: { readonly signal: AbortSignal },
): Promise<ReadableStream<Uint8Array> | null> {
  const reader = stream.getReader();
  const first = firstBytes(reader);
  // Awaited again by the first pull; a stream nobody pulls must not leave it unhandled.
  first.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(resolve, peekMs, "late"));
  let early: Uint8Array | undefined | "late";
  try {
    early = await Promise.race([first, late]);
  } catch (error) {
    throw clientClosed(error);
  } finally {
    clearTimeout(timer);
  }
  if (early === undefined) return null;
  const end = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
    if (client && await clientCut(client)) controller.error(new Error(CLIENT_CUT_BODY));
    else controller.close();
  };
  let head: Promise<Uint8Array | undefined> | undefined = early === "late" ? first : undefined;
  let ready = early === "late" ? undefined : early;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (head) {
        ready = await head;
        head = undefined;
        if (ready === undefined) return end(controller);
      }
      if (ready) {
        controller.enqueue(ready);
        ready = undefined;
        return;
      }
      const { done, value } = await reader.read();
      if (done) await end(controller);
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** The first bytes of the stream, or `undefined` when it ends without any. */
async function firstBytes(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<Uint8Array | undefined> {
  for (;;) {
    // Deno.serve's stream of an absent body yields one empty chunk before it ends.
    const { done, value } = await reader.read();
    if (done) return undefined;
    if (value.byteLength > 0) return value;
  }
}
