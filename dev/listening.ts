/**
 * @module How the dev stack learns that vestibule listens, and on which port: from the line
 * `Deno.serve` writes to stderr once it does (`Listening on http://127.0.0.1:43567/`).
 */

/** What `Deno.serve` writes first on the line that says where it listens. */
export const LISTENING = "Listening on";

/**
 * Copies `stream` (vestibule's stderr) to `to` (the stack's stderr) as it comes; `line` resolves
 * with the first whole line that holds `marker`, or undefined if the stream ended first.
 */
export function passOn(
  stream: ReadableStream<Uint8Array>,
  to: { write(bytes: Uint8Array): Promise<number> } = Deno.stderr,
  marker = LISTENING,
): { line: Promise<string | undefined>; done: Promise<void> } {
  const line = Promise.withResolvers<string | undefined>();
  const done = (async () => {
    const decoder = new TextDecoder();
    let text = "";
    let found = false;
    let writing = true;
    for await (const chunk of stream) {
      try {
        for (let at = 0; writing && at < chunk.length;) {
          at += await to.write(chunk.subarray(at));
        }
      } catch {
        writing = false; // the stack's own stderr has gone; vestibule's is still drained
      }
      if (found) continue;
      text += decoder.decode(chunk, { stream: true });
      const at = text.indexOf(marker);
      if (at === -1) {
        // Only the tail a marker split across chunks can start in: Deno's own lines (DENO_LOG,
        // downloads) may run to megabytes before it.
        text = text.slice(-marker.length);
        continue;
      }
      const end = text.indexOf("\n", at);
      // The rest of the line (the port) may come in the next chunk.
      text = text.slice(at);
      if (end === -1) continue;
      found = true;
      line.resolve(text.slice(0, end - at));
    }
  })().finally(() => line.resolve(undefined));
  return { line: line.promise, done };
}

/**
 * The port in `Deno.serve`'s listening line (`Listening on http://[::1]:43567/`, or
 * `http://0.0.0.0:8000/ (http://localhost:8000/)`), or undefined if it names none.
 */
export function listeningPort(line: string): number | undefined {
  const port = /^Listening on https?:\/\/(?:\[[^\]]*\]|[^/:\s]+):(\d+)\//.exec(line)?.[1];
  return port === undefined ? undefined : Number(port);
}
