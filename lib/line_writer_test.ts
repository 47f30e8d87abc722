import assert from "node:assert/strict";
import { bufferedLineWriter } from "./line_writer.ts";

function recorder() {
  const writes: Uint8Array[] = [];
  return {
    writes,
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
    writeSync(bytes: Uint8Array) {
      if (broken) throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
      written.push(new TextDecoder().decode(bytes));
      return bytes.length;
    },
  };
  const errors: unknown[] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void errors.push(args);
  try {
    const log = bufferedLineWriter(out);
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
  } finally {
    console.error = consoleError;
  }
});
