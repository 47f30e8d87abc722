/**
 * @module A line writer for the access log that batches lines into one `write` per event-loop
 * turn instead of one per request: `console.log` costs a system call (about 4 µs) per line,
 * several percent of a proxied request.
 */

/** POSIX `PIPE_BUF` on Linux: a pipe write up to this size is never interleaved with another. */
export const PIPE_BUF = 4096;

/**
 * A batch for a process with one writer (`deno run main.ts`, Deno Deploy): nobody's lines to mix
 * with, so one write per about 200 lines instead of about 12. The write is a system call on the
 * event loop: in two paired load runs, CPU time per logged request fell by 4 and 9 %.
 */
export const LONE_WRITER_BATCH = 65536;

/**
 * How long a line may wait for the buffer to fill. Under load the buffer fills first (about a
 * dozen lines); flushing on every event-loop turn instead cost a write and a timer per turn.
 */
const FLUSH_AFTER_MS = 20;

/** Synchronous writes that waited this long in all waited for a log reader that is behind. */
const SLOW_WRITE_MS = 50;

/**
 * The most bytes of finished batches waiting for the log reader. A reader that stops reading (a
 * stalled log shipper, a Docker log driver in blocking mode) must not stop the server: lines
 * beyond this are dropped and counted, as nginx drops lines it cannot write.
 */
export const MAX_QUEUED_BYTES = 1024 * 1024;

/** Where lines go: `Deno.stdout`, or a file in tests. */
export interface LineOutput {
  /** Writes off the event loop; a full pipe holds this promise, not the server. */
  write(bytes: Uint8Array): Promise<number>;
  /** Used once, for the lines still pending when the process exits. */
  writeSync(bytes: Uint8Array): number;
}

/** Takes one access-log line (without its newline). */
export interface LineWriter {
  (line: string): void;
  /** Queues the lines waiting for the flush timer; resolves once every queued batch is written. */
  drain(): Promise<void>;
  /**
   * A stop is under way: {@linkcode drain}, and from now on a line is written as it comes
   * (synchronously when no write is in flight), so the exit cannot cut it off once its answer has
   * left; under `deno serve --parallel` another worker's exit gives no warning.
   */
  stop(): Promise<void>;
}

/** Options of {@linkcode bufferedLineWriter}. */
export interface LineWriterOptions {
  /** Bytes per write; {@linkcode PIPE_BUF} keeps lines of several writers from mixing. */
  batchBytes?: number;
  /** {@linkcode MAX_QUEUED_BYTES} unless given. */
  maxQueuedBytes?: number;
  /** Where the writer says it is dropping lines; stderr, without blocking, unless given. */
  report?: (message: string) => void;
  /** Monotonic milliseconds, for how long synchronous writes waited; tests give their own. */
  now?: () => number;
}

/**
 * Returns a `log` function for {@linkcode AppDeps}. Lines are encoded into a batch of
 * `batchBytes` that is queued when the next line would not fit, and at the latest
 * {@linkcode FLUSH_AFTER_MS} after its first line; one write at a time takes batches from the
 * queue. Batches end on a line boundary; with the default, `PIPE_BUF`, lines from several
 * `deno serve --parallel` workers sharing one stdout pipe never mix. Before a stop, `main.ts` awaits
 * `drain()`; on `unload` the batch being filled is written unless a write is still in flight (a
 * slow or stalled reader, which would hold the exit). A crash loses at most 20 ms of lines.
 */
export function bufferedLineWriter(
  out: LineOutput = Deno.stdout,
  {
    batchBytes = PIPE_BUF,
    maxQueuedBytes = MAX_QUEUED_BYTES,
    report = reportToStderr,
    now = () => performance.now(),
  }: LineWriterOptions = {},
): LineWriter {
  const encoder = new TextEncoder();
  const buffer = new Uint8Array(batchBytes);
  let used = 0;
  let lines = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const queue: Uint8Array[] = [];
  let queuedBytes = 0;
  let writing = false;
  /** Lines dropped since the queue was last empty; reported when it empties again. */
  let dropped = 0;
  let failing = false;
  /** Set by `stop()`: lines do not wait for the flush timer. */
  let stopping = false;
  /**
   * Milliseconds the synchronous writes that had to wait (over 1 ms each) took, all together: past
   * SLOW_WRITE_MS the reader is behind, and the next could hold the worker, its exit timer too.
   */
  let waitedMs = 0;

  // A log reader that went away (a closed pipe: BrokenPipe) must not take the server with it:
  // the lines are dropped and the failure is reported once.
  const failed = (error: unknown) => {
    if (failing) return;
    failing = true;
    report(JSON.stringify({ msg: "access log write failed, lines dropped", error: String(error) }));
  };
  const pump = async () => {
    if (writing) return;
    writing = true;
    while (queue.length > 0) {
      const batch = queue[0];
      try {
        for (let at = 0; at < batch.length;) at += await out.write(batch.subarray(at));
        failing = false;
      } catch (error) {
        failed(error);
      }
      queue.shift();
      queuedBytes -= batch.length;
    }
    writing = false;
    drained?.resolve();
    drained = undefined;
    if (dropped > 0) {
      report(
        JSON.stringify({ msg: "access log reader fell behind, lines dropped", lines: dropped }),
      );
      dropped = 0;
    }
  };
  const enqueue = (batch: Uint8Array, count: number) => {
    if (queuedBytes + batch.length > maxQueuedBytes) {
      if (dropped === 0) {
        report(JSON.stringify({ msg: "access log reader is not keeping up, dropping lines" }));
      }
      dropped += count;
      return;
    }
    queue.push(batch);
    queuedBytes += batch.length;
    void pump();
  };
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (used === 0) return;
    // A copy of the bytes used: a queued 64 KiB buffer holding one line would make the 1 MiB
    // bound hundreds of MiB behind a stalled reader on a quiet server.
    enqueue(buffer.slice(0, used), lines);
    used = 0;
    lines = 0;
  };
  let drained: PromiseWithResolvers<void> | undefined;
  /** Writes the batch being filled synchronously; only with no write in flight (see unload). */
  const writeNow = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    const started = now();
    try {
      for (let at = 0; at < used;) at += out.writeSync(buffer.subarray(at, used));
      const tookMs = now() - started;
      if (tookMs > 1) waitedMs += tookMs;
    } catch (error) {
      failed(error);
    }
    used = 0;
    lines = 0;
  };
  globalThis.addEventListener("unload", () => {
    if (timer !== undefined) clearTimeout(timer);
    // A write still in flight says the reader is slow or has stopped: a synchronous write behind
    // it could hold the exit forever (a stop awaits `drain()` first). Otherwise the queue is
    // empty, and the batch being filled goes now.
    if (writing || used === 0) return;
    writeNow();
  });
  // The line is encoded straight into the batch, one byte short of its end so the newline
  // always fits, instead of first copying it into a new string with the newline appended.
  const room = buffer.subarray(0, batchBytes - 1);
  const log = (line: string) => {
    if (used === batchBytes) flush(); // Full to the last byte (the newline of a line that just fit).
    let { read, written } = encoder.encodeInto(line, room.subarray(used));
    if (read < line.length) {
      flush();
      ({ read, written } = encoder.encodeInto(line, room));
      if (read < line.length) { // Longer than the batch: queued on its own.
        enqueue(encoder.encode(`${line}\n`), 1);
        return;
      }
    }
    used += written;
    buffer[used++] = 0x0a;
    lines++;
    if (!stopping) timer ??= setTimeout(flush, FLUSH_AFTER_MS);
    // Behind a slow reader: queued, as the unload handler leaves it.
    else if (writing || waitedMs > SLOW_WRITE_MS) flush();
    else writeNow();
  };
  const drain = (): Promise<void> => {
    flush();
    if (!writing) return Promise.resolve();
    drained ??= Promise.withResolvers();
    return drained.promise;
  };
  return Object.assign(log, {
    drain,
    stop(): Promise<void> {
      stopping = true;
      return drain();
    },
  });
}

/**
 * Writes `message` to stderr without waiting: stderr often goes to the same stalled reader as
 * stdout, and a synchronous write there would stop the server as surely. One at a time; a
 * message while one is pending is dropped.
 */
let stderrBusy = false;
function reportToStderr(message: string): void {
  if (stderrBusy) return;
  stderrBusy = true;
  Deno.stderr.write(new TextEncoder().encode(`${message}\n`))
    .catch(() => {/* stderr is gone too */})
    .finally(() => stderrBusy = false);
}
