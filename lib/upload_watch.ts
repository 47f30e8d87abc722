/**
 * @module Watches a request body as it streams to an upstream, so that the upstream's timeout
 * counts silence, not the length of an upload: nginx's `proxy_send_timeout` likewise runs between
 * two writes, not over the whole body. Without it, any upload slower than `timeout_ms` (30 s by
 * default, about 40 MB on a 10 Mbit/s uplink) was cut off with 504 while its bytes still flowed.
 */

/** How a streamed request body is doing; read when the upstream's deadline comes. */
export class UploadWatch {
  /** `performance.now()` of the last chunk handed to the upstream, or of the body's end. */
  lastActivity = performance.now();
  /** The upstream asked for more and the client has not sent it yet. */
  waitingOnClient = false;
  /** Reading the client's body failed: the client went away mid-upload. */
  clientBroke = false;

  /**
   * The body to send instead of `source`. It pulls a chunk only when `fetch` asks for one
   * (no buffer of its own), so an upstream that stops reading stops the clock's restarts too.
   */
  watch(source: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const reader = source.getReader();
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        this.waitingOnClient = true;
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          this.clientBroke = true;
          throw error;
        } finally {
          this.waitingOnClient = false;
        }
        this.lastActivity = performance.now();
        if (chunk.done) controller.close();
        else controller.enqueue(chunk.value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  /** Milliseconds since the last sign of progress. */
  idleMs(): number {
    return performance.now() - this.lastActivity;
  }
}
