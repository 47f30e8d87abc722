import assert from "node:assert/strict";
import fc from "fast-check";
import { type DeadlineClock, DeadlineQueue } from "./deadline_queue.ts";

/** A clock whose time moves only when the test says, running due timers in order. */
class ManualClock implements DeadlineClock {
  time = 0;
  timers = new Map<number, { due: number; callback: () => void }>();
  #nextId = 1;

  now = () => this.time;
  setTimer = (callback: () => void, ms: number) => {
    const id = this.#nextId++;
    this.timers.set(id, { due: this.time + Math.max(1, ms), callback });
    return id;
  };
  clearTimer = (id: unknown) => void this.timers.delete(id as number);

  advance(to: number): void {
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.due <= to)
        .sort((a, b) => a[1].due - b[1].due)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].due;
      due[1].callback();
    }
    this.time = to;
  }
}

Deno.test("DeadlineQueue fires an uncancelled deadline once, when it is due", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const fired: string[] = [];
  queue.add(100, () => fired.push("a"));
  queue.add(50, () => fired.push("b"));
  clock.advance(49);
  assert.deepEqual(fired, []);
  clock.advance(50);
  assert.deepEqual(fired, ["b"]);
  clock.advance(1000);
  assert.deepEqual(fired, ["b", "a"]);
  assert.equal(queue.size, 0);
  assert.equal(clock.timers.size, 0, "no timer is left once nothing is pending");
});

Deno.test("DeadlineQueue: a cancelled deadline never fires, and the last cancel clears the timer", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  let fired = 0;
  const a = queue.add(100, () => fired++);
  const b = queue.add(100, () => fired++);
  a.cancel();
  a.cancel();
  assert.equal(queue.size, 1);
  b.cancel();
  assert.equal(clock.timers.size, 0);
  clock.advance(500);
  assert.equal(fired, 0);
});

Deno.test("DeadlineQueue: under steady load the timer is armed once, not per deadline", () => {
  const clock = new ManualClock();
  let armed = 0;
  const queue = new DeadlineQueue({
    ...clock,
    setTimer: (callback, ms) => {
      armed++;
      return clock.setTimer(callback, ms);
    },
  });
  let keep = queue.add(1000, () => {});
  for (let i = 0; i < 10_000; i++) {
    clock.time += 0.01;
    const next = queue.add(1000, () => {});
    keep.cancel();
    keep = next;
  }
  assert.equal(armed, 1);
  keep.cancel();
});

Deno.test("DeadlineQueue: one hanging call does not keep every finished call after it in memory", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const hanging = queue.add(30_000, () => {});
  for (let i = 0; i < 100_000; i++) {
    queue.add(30_000, () => {}).cancel();
    assert.ok(queue.retained <= 4 * 2048, `${queue.retained} entries held after ${i + 1} calls`);
  }
  assert.equal(queue.size, 1);
  hanging.cancel();
  assert.equal(clock.timers.size, 0);
});

Deno.test("DeadlineQueue matches a model: each deadline fires iff not cancelled before it is due, never early", () => {
  type Op =
    | { kind: "add"; ms: number }
    | { kind: "cancel"; pick: number }
    | { kind: "advance"; by: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant("add" as const), ms: fc.constantFrom(5, 10, 30, 100) }),
    fc.record({ kind: fc.constant("cancel" as const), pick: fc.nat() }),
    fc.record({
      kind: fc.constant("advance" as const),
      // Mostly small steps, so deadlines a millisecond apart meet the same timer firing.
      by: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 60 })),
    }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200, size: "max" }), (ops) => {
      const clock = new ManualClock();
      const queue = new DeadlineQueue(clock);
      const entries: Array<{
        at: number;
        firedAt?: number;
        cancelled: boolean;
        handle: { cancel(): void };
      }> = [];
      for (const o of ops) {
        if (o.kind === "add") {
          const entry = { at: clock.time + o.ms, cancelled: false } as (typeof entries)[number];
          entry.handle = queue.add(o.ms, () => {
            assert.equal(entry.firedAt, undefined, "fired twice");
            entry.firedAt = clock.time;
          });
          entries.push(entry);
        } else if (o.kind === "cancel" && entries.length > 0) {
          const entry = entries[o.pick % entries.length];
          if (entry.firedAt === undefined) entry.cancelled = true;
          entry.handle.cancel();
        } else if (o.kind === "advance") {
          clock.advance(clock.time + o.by);
        }
        for (const e of entries) {
          const due = !e.cancelled && e.at <= clock.time;
          assert.equal(e.firedAt !== undefined, due, `entry due at ${e.at}, now ${clock.time}`);
          if (e.firedAt !== undefined) assert.ok(e.firedAt >= e.at, "fired early");
        }
        const live = entries.filter((e) => !e.cancelled && e.firedAt === undefined).length;
        assert.equal(queue.size, live);
        assert.equal(clock.timers.size, live > 0 ? 1 : 0, "one timer while anything is pending");
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("DeadlineQueue: a settled deadline no longer holds its callback (nor what it captures)", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const held = queue.add(100, () => {}) as unknown as { onExpire?: unknown };
  const cancelled = queue.add(100, () => {}) as unknown as { onExpire?: unknown };
  (cancelled as unknown as { cancel(): void }).cancel();
  assert.equal(cancelled.onExpire, undefined);
  clock.advance(100);
  assert.equal(held.onExpire, undefined, "an expired one lets go too");
});

Deno.test("DeadlineQueue: after an outage's timeouts, one hanging call still does not keep every finished call after it", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const other = queue.add(60_000, () => {}); // another duration keeps the queue from emptying
  let expired = 0;
  // A dead region: every call of this duration times out.
  for (let i = 0; i < 10_000; i++) queue.add(1_000, () => expired++);
  clock.advance(1_000);
  assert.equal(expired, 10_000);
  // The region is back: one call hangs, every later one finishes at once.
  const hanging = queue.add(1_000, () => {});
  for (let i = 0; i < 100_000; i++) {
    queue.add(1_000, () => {}).cancel();
    assert.ok(
      queue.retained <= 4 * 2048 + 1,
      `${queue.retained} entries held after ${i + 1} calls`,
    );
  }
  assert.equal(queue.size, 2);
  hanging.cancel();
  other.cancel();
  assert.equal(clock.timers.size, 0);
});
