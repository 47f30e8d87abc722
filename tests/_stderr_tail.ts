/** @module Test helper: the end of what a child process writes to stderr, to say why it failed. */

/** What a child wrote last to stderr, read as it comes. */
export interface StderrTail {
  /** The last few KB so far. */
  readonly text: string;
  /**
   * Reads what is still on its way (up to `ms`: a process still running, or one that left the pipe
   * to a child, may never end it), then stops reading.
   */
  close(ms?: number): Promise<void>;
}

/**
 * Drains `stream` as it comes (DENO_LOG=debug writes megabytes, and a pipe no one reads stops
 * the child at 64 KiB), keeping only its last `bytes` characters.
 */
export function keepTail(stream: ReadableStream<Uint8Array>, bytes = 4_096): StderrTail {
  let text = "";
  const reader = stream.getReader();
  const drained = (async () => {
    const decoder = new TextDecoder();
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      text = (text + decoder.decode(read.value, { stream: true })).slice(-bytes);
    }
  })().catch(() => {});
  return {
    get text() {
      return text;
    },
    async close(ms = 200) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([drained, new Promise((resolve) => timer = setTimeout(resolve, ms))]);
      clearTimeout(timer);
      await reader.cancel().catch(() => {});
      await drained;
    },
  };
}
