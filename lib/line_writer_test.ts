import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { bufferedLineWriter, LONE_WRITER_BATCH, MAX_QUEUED_BYTES } from "./line_writer.ts";
import { within } from "../tests/_servers.ts";

function recorder() {
  const writes: Uint8Array[] = [];
  return {
    writes,
    write(bytes: Uint8Array) {
      writes.push(bytes.slice());
      return Promise.resolve(bytes.length);
    },
    writeSync(bytes: Uint8Array) {
      writes.push(bytes.slice());
      return bytes.length;
    },
    text: () => writes.map((w) => new TextDecoder().decode(w)).join(""),
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 30));

Deno.test("bufferedLineWriter() writes the lines of one flush interval in one write", async () => {
  const out = recorder();
  const log = bufferedLineWriter(out);
  log('{"a":1}');
  log('{"b":"é"}');
  assert.equal(out.writes.length, 0, "nothing written before the flush interval ends");
  await tick();
  assert.equal(out.writes.length, 1);
  assert.equal(out.text(), '{"a":1}\n{"b":"é"}\n');
  log("next");
  await tick();
  assert.equal(out.writes.length, 2);
  assert.equal(out.text(), '{"a":1}\n{"b":"é"}\nnext\n');
});

Deno.test("bufferedLineWriter() keeps every write within PIPE_BUF and on line boundaries", async () => {
  const out = recorder();
  const log = bufferedLineWriter(out);
  const lines = Array.from({ length: 100 }, (_, i) => `${i}:${"ü".repeat(100)}`);
  for (const line of lines) log(line);
  const huge = "x".repeat(10_000);
  log(huge);
  log("after");
  await tick();
  for (const w of out.writes) {
    assert.ok(w.length <= 4096 || w.length === huge.length + 1, `a write of ${w.length} bytes`);
    assert.equal(w.at(-1), 0x0a, "ends with a newline");
  }
  assert.ok(out.writes.length > 5, `${out.writes.length} writes`);
  assert.equal(out.text(), [...lines, huge, "after"].map((l) => `${l}\n`).join(""));
});

Deno.test("bufferedLineWriter() fills the buffer to its last byte without losing a newline", async () => {
  const out = recorder();
  const log = bufferedLineWriter(out);
  log("x".repeat(4095)); // 4095 bytes and its newline: exactly PIPE_BUF
  log("");
  log("");
  log("y");
  await tick();
  assert.equal(out.text(), `${"x".repeat(4095)}\n\n\ny\n`);
  assert.ok(out.writes.every((w) => w.length <= 4096));
});

Deno.test("bufferedLineWriter() with a larger batch writes fewer, bigger batches on line boundaries", async () => {
  const out = recorder();
  const log = bufferedLineWriter(out, { batchBytes: 65536 });
  const lines = Array.from({ length: 1000 }, (_, i) => `${i}:${"é".repeat(100)}`);
  for (const line of lines) log(line);
  await tick();
  assert.ok(out.writes.length <= 4, `${out.writes.length} writes for about 200 KB`);
  for (const w of out.writes) {
    assert.ok(w.length <= 65536, `a write of ${w.length} bytes`);
    assert.equal(w.at(-1), 0x0a, "ends with a newline");
  }
  assert.equal(out.text(), lines.map((l) => `${l}\n`).join(""));
});

Deno.test("crash: bufferedLineWriter() drops lines a closed pipe refuses instead of throwing from its timer", async () => {
  let broken = true;
  const written: string[] = [];
  const out = {
    write(bytes: Uint8Array) {
      if (broken) return Promise.reject(new Deno.errors.BrokenPipe("Broken pipe (os error 32)"));
      written.push(new TextDecoder().decode(bytes));
      return Promise.resolve(bytes.length);
    },
    writeSync: () => 0,
  };
  const errors: unknown[] = [];
  {
    const log = bufferedLineWriter(out, { report: (message) => errors.push(message) });
    log("lost 1");
    await tick(); // the timer's flush: uncaught, this failed the test (and ended vestibule)
    log("lost 2");
    log("x".repeat(5000)); // longer than the buffer: written on its own, also refused
    await tick();
    assert.equal(errors.length, 1, "reported once");
    broken = false;
    log("kept");
    await tick();
    assert.deepEqual(written, ["kept\n"]);
  }
});

/** An output whose writes wait until `release()`, as a pipe nobody reads. */
function stalledOutput() {
  const written: string[] = [];
  const waiting: (() => void)[] = [];
  let stalled = true;
  let syncWrites = 0;
  return {
    written,
    get syncWrites() {
      return syncWrites;
    },
    write(bytes: Uint8Array) {
      const text = new TextDecoder().decode(bytes);
      if (!stalled) {
        written.push(text);
        return Promise.resolve(bytes.length);
      }
      return new Promise<number>((resolve) =>
        waiting.push(() => {
          written.push(text);
          resolve(bytes.length);
        })
      );
    },
    writeSync(bytes: Uint8Array) {
      syncWrites++;
      return bytes.length;
    },
    release() {
      stalled = false;
      for (const go of waiting.splice(0)) go();
    },
  };
}

Deno.test("denial of service: bufferedLineWriter() with a reader that stopped reading keeps a bounded queue and drops the rest", async () => {
  const out = stalledOutput();
  const reports: string[] = [];
  const log = bufferedLineWriter(out, {
    maxQueuedBytes: 64 * 1024,
    report: (message) => reports.push(message),
  });
  const lines = Array.from({ length: 20_000 }, (_, i) => `${i}:${"x".repeat(100)}`); // ~2.2 MB
  for (const line of lines) log(line); // never waits: the writes are off the event loop
  await tick();
  assert.equal(reports.length, 1, "reported once while it drops");
  assert.match(reports[0], /not keeping up/);
  // A stop now writes nothing synchronously: the reader would hold the exit forever.
  globalThis.dispatchEvent(new Event("unload"));
  assert.equal(out.syncWrites, 0);

  out.release();
  log("after");
  await tick();
  const got = out.written.join("").split("\n").slice(0, -1);
  assert.equal(got.at(-1), "after");
  const kept = got.slice(0, -1);
  assert.ok(kept.length > 0 && kept.length * 105 <= 64 * 1024 + 4096, `${kept.length} kept`);
  assert.deepEqual(kept, lines.slice(0, kept.length), "the first lines, whole and in order");
  assert.equal(reports.length, 2);
  assert.deepEqual(JSON.parse(reports[1]), {
    msg: "access log reader fell behind, lines dropped",
    lines: lines.length - kept.length,
  });
});

Deno.test("bufferedLineWriter() on unload writes the batch being filled, and nothing behind a write in flight", async (t) => {
  await t.step("no write in flight: the batch goes synchronously", () => {
    const out = stalledOutput();
    const log = bufferedLineWriter(out, { report: () => {} });
    log("last words");
    globalThis.dispatchEvent(new Event("unload"));
    assert.equal(out.syncWrites, 1);
  });
  await t.step("a write in flight: nothing, which could block the exit forever", async () => {
    const out = stalledOutput();
    const log = bufferedLineWriter(out, { report: () => {} });
    log("a".repeat(3000));
    log("b".repeat(3000)); // does not fit: the first batch is queued and its write starts
    globalThis.dispatchEvent(new Event("unload"));
    assert.equal(out.syncWrites, 0);
    out.release();
    await tick();
  });
});

Deno.test("denial of service: bufferedLineWriter() behind a stalled reader holds about its queue bound, not a 64 KiB buffer per flush", () => {
  const out = { write: () => new Promise<number>(() => {}), writeSync: () => 0 };
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  try {
    // main.ts under `deno run`: 64 KiB batches; a quiet server, one request per 20 ms flush.
    const log = bufferedLineWriter(out, { batchBytes: LONE_WRITER_BATCH, report: () => {} });
    const before = Deno.memoryUsage().external;
    for (let i = 0; i < 4000; i++) {
      log(`{"i":${i},"path":"/${"a".repeat(250)}"}`); // one line of ~270 bytes per batch
      clock.tick(21);
    }
    const grown = Deno.memoryUsage().external - before;
    assert.ok(
      grown < 4 * MAX_QUEUED_BYTES,
      `external memory grew by ${(grown / 2 ** 20).toFixed(0)} MiB with a 1 MiB queue bound`,
    );
  } finally {
    clock.uninstall();
  }
});

Deno.test("lost log lines: bufferedLineWriter() keeps every line after more than its queue bound has been written", async () => {
  const out = recorder();
  const reports: string[] = [];
  const log = bufferedLineWriter(out, { report: (m) => reports.push(m) });
  const line = "x".repeat(1000);
  // 3 MiB in all, through a reader that keeps up: the 1 MiB bound is on what waits, not on the total.
  const total = Math.ceil((3 * MAX_QUEUED_BYTES) / (line.length + 1));
  for (let i = 0; i < total; i++) {
    log(line);
    if (i % 100 === 99) await log.drain();
  }
  await log.drain();
  assert.deepEqual(reports, []);
  assert.equal(out.text().split("\n").length - 1, total);
});

Deno.test("lost log lines: bufferedLineWriter() finishes a batch an output wrote only in part", async () => {
  const writes: Uint8Array[] = [];
  // A pipe takes what it has room for: at most 100 bytes per write here.
  const out = {
    write(bytes: Uint8Array) {
      writes.push(bytes.slice(0, 100));
      return Promise.resolve(Math.min(bytes.length, 100));
    },
    writeSync: (bytes: Uint8Array) => bytes.length,
  };
  const log = bufferedLineWriter(out);
  const lines = Array.from({ length: 20 }, (_, i) => `{"n":${i},"pad":"${"p".repeat(40)}"}`);
  for (const line of lines) log(line);
  await log.drain();
  const text = writes.map((w) => new TextDecoder().decode(w)).join("");
  assert.equal(text, lines.map((l) => `${l}\n`).join(""));
});

Deno.test("bufferedLineWriter() reports a reader that fails again after it had recovered", async () => {
  let calls = 0;
  const out = {
    // Fails, recovers, fails again: an operator must hear of the second loss too.
    write(bytes: Uint8Array) {
      calls++;
      return calls === 2
        ? Promise.resolve(bytes.length)
        : Promise.reject(new Deno.errors.BrokenPipe("gone"));
    },
    writeSync: (bytes: Uint8Array) => bytes.length,
  };
  const reports: string[] = [];
  const log = bufferedLineWriter(out, { report: (m) => reports.push(m) });
  for (const line of ["a", "b", "c"]) {
    log(line);
    await log.drain();
  }
  assert.equal(calls, 3);
  assert.equal(reports.filter((r) => r.includes("access log write failed")).length, 2);
});

Deno.test("bufferedLineWriter().stop(): each later line is written at once, synchronously, unless a write is in flight", async () => {
  // Under `deno serve --parallel` another worker's exit ends this one without warning: a line
  // waiting for the flush timer would be lost with its answer already sent.
  const sync: string[] = [];
  const async: string[] = [];
  let release: (() => void) | undefined;
  const log = bufferedLineWriter({
    write(bytes) {
      async.push(new TextDecoder().decode(bytes));
      return new Promise((resolve) => release = () => resolve(bytes.length));
    },
    writeSync(bytes) {
      sync.push(new TextDecoder().decode(bytes));
      return bytes.length;
    },
  });
  log("before");
  const stopped = log.stop();
  assert.deepEqual(async, ["before\n"], "the batch being filled goes at once");
  log("behind a write in flight");
  assert.deepEqual(sync, [], "queued behind it, not written past it");
  release!();
  await tick();
  assert.deepEqual(async, ["before\n", "behind a write in flight\n"]);
  release!();
  await stopped;
  log("after");
  assert.deepEqual(sync, ["after\n"], "no write in flight: written before log() returns");
});

Deno.test("slow log reader: bufferedLineWriter().stop() does not hold the event loop a second when every synchronous write waits just under 50 ms", () => {
  // A reader that frees the pipe a little at a time (a page every ~45 ms) makes each write wait,
  // but never more than 50 ms at once: every line of a stop then blocks the worker, its exit
  // timer too (serve.ts gives the lines DRAIN_AFTER_GRACE_MS = 1 s).
  // The test's own clock: each write waits exactly 45 ms, however busy the machine is (with a
  // busy-wait, one write could pass 50 ms alone, and a writer that counted each wait on its own
  // then passed too).
  let clock = 0;
  let syncWrites = 0;
  const log = bufferedLineWriter({
    write: (bytes) => Promise.resolve(bytes.length),
    writeSync(bytes) {
      syncWrites++;
      clock += 45; // the pipe is full
      return bytes.length;
    },
  }, { now: () => clock });
  void log.stop();
  for (let i = 0; i < 40; i++) log(`line ${i}`);
  // The waits add up: the second write takes the stop past 50 ms in all, and it writes no more
  // synchronously (counted one by one, all 40 were: 1,800 ms held).
  assert.ok(clock < 1000, `40 lines held the event loop ${clock} ms in ${syncWrites} writes`);
  assert.ok(syncWrites <= 2, `${syncWrites} synchronous writes`);
});

Deno.test("slow stop: bufferedLineWriter().drain() and stop() with nothing left to write resolve at once, not at the end of the grace period", async () => {
  const out = recorder();
  const log = bufferedLineWriter(out);
  // main.ts races stop() against the rest of the 25 s grace period: an idle server must not
  // wait it out.
  assert.equal(await within(log.drain(), 1000), undefined, "drain() of a writer that never wrote");
  log('{"a":1}');
  assert.equal(await within(log.drain(), 1000), undefined, "drain() of one line");
  assert.equal(out.text(), '{"a":1}\n');
  assert.equal(await within(log.drain(), 1000), undefined, "drain() once everything is written");
  assert.equal(await within(log.stop(), 1000), undefined, "stop() once everything is written");
});

Deno.test("mixed log lines: bufferedLineWriter() ends a line exactly as long as a batch with its own newline", async () => {
  const out = recorder();
  const log = bufferedLineWriter(out);
  const full = "x".repeat(4096); // PIPE_BUF bytes before its newline
  log(full);
  log('{"next":1}');
  await tick();
  assert.deepEqual(out.text().split("\n"), [full, '{"next":1}', ""]);
});

Deno.test("lost log lines: bufferedLineWriter() keeps a batch that fills its queue bound exactly", async () => {
  const out = stalledOutput();
  const reports: string[] = [];
  // Four batches of one 5-byte line each fill a 20-byte queue to the byte.
  const log = bufferedLineWriter(out, { maxQueuedBytes: 20, report: (m) => reports.push(m) });
  const lines = ["l1..", "l2..", "l3..", "l4.."];
  const drained = lines.map((line) => {
    log(line);
    return log.drain();
  });
  out.release();
  await Promise.all(drained);
  assert.deepEqual(reports, [], "nothing dropped");
  assert.equal(out.written.join(""), lines.map((l) => `${l}\n`).join(""));
});
