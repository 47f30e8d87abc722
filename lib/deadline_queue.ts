/**
 * @module Many timeouts on one timer. Every upstream call needs a timeout, but almost none of
 * them fire: a `setTimeout` and `clearTimeout` per request cost about 2 µs and a timer object
 * that outlives the request. Calls with the same duration expire in the order they started, so
 * each duration keeps a first-in, first-out lane, and one timer waits for the earliest live
 * deadline of all lanes. Under load that timer is re-armed about once per duration, not once per
 * request. (nginx keeps its timers in one tree for the same reason; Node.js groups its timers
 * into lists by duration.)
 */

/** A scheduled expiry; cancel it once the guarded operation has finished. */
export interface Deadline {
  cancel(): void;
}

/** Clock and timer, injected so tests can drive time by hand. */
export interface DeadlineClock {
  /** Monotonic milliseconds. */
  now(): number;
  setTimer(callback: () => void, ms: number): unknown;
  clearTimer(id: unknown): void;
}

const REAL_CLOCK: DeadlineClock = {
  now: () => performance.now(),
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** Deadlines of one duration, in the order they were added (so also in deadline order). */
class Lane {
  items: Pending[] = [];
  /** Index of the first entry that may still be live. */
  head = 0;
  live = 0;

  /** Drops finished entries from the front; copies the array only when most of it is dead. */
  trim(): void {
    while (this.head < this.items.length && this.items[this.head].done) {
      // Release the slot: an entry kept here would survive garbage collections it should not.
      this.items[this.head++] = FINISHED;
    }
    const alive = this.items.length - this.head;
    if (this.head > 1024 && this.head > alive) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    // A long-lived call at the head must not pin every later (finished) entry in memory.
    if (alive > 2048 && alive > 4 * this.live) {
      this.items = this.items.slice(this.head).filter((item) => !item.done);
      this.head = 0;
    }
  }
}

class Pending implements Deadline {
  done = false;
  constructor(
    readonly at: number,
    /** Dropped once the deadline is settled, so a finished entry holds nothing of its call. */
    public onExpire: (() => void) | undefined,
    readonly lane: Lane,
    readonly queue: DeadlineQueue,
  ) {}

  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.onExpire = undefined;
    this.queue.settled(this);
  }
}

/** What a released slot of a lane holds. */
const FINISHED = new Pending(0, undefined, new Lane(), undefined as unknown as DeadlineQueue);
FINISHED.done = true;

/** Schedules expiries on one shared timer; see the module comment. */
export class DeadlineQueue {
  #clock: DeadlineClock;
  #lanes = new Map<number, Lane>();
  #live = 0;
  #timer: unknown;
  #timerAt = Infinity;

  constructor(clock: DeadlineClock = REAL_CLOCK) {
    this.#clock = clock;
  }

  /** Deadlines neither expired nor cancelled yet. */
  get size(): number {
    return this.#live;
  }

  /** Entries still held in memory, live or finished but not yet dropped; bounded by the trimming. */
  get retained(): number {
    let count = 0;
    for (const lane of this.#lanes.values()) count += lane.items.length - lane.head;
    return count;
  }

  /** Calls `onExpire` once `ms` milliseconds have passed, unless cancelled before. */
  add(ms: number, onExpire: () => void): Deadline {
    let lane = this.#lanes.get(ms);
    if (!lane) this.#lanes.set(ms, lane = new Lane());
    const at = this.#clock.now() + ms;
    const pending = new Pending(at, onExpire, lane, this);
    lane.items.push(pending);
    lane.live++;
    this.#live++;
    if (at < this.#timerAt) this.#arm(at);
    return pending;
  }

  /** Bookkeeping for {@linkcode Pending.cancel}; not for callers. */
  settled(pending: Pending): void {
    pending.lane.live--;
    if (--this.#live === 0) return this.#reset();
    pending.lane.trim();
  }

  #expire = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#clock.now();
    const expired: Pending[] = [];
    let next = Infinity;
    for (const lane of this.#lanes.values()) {
      while (lane.head < lane.items.length) {
        const item = lane.items[lane.head];
        if (!item.done && item.at > now) break;
        if (!item.done) {
          item.done = true;
          lane.live--;
          this.#live--;
          expired.push(item);
        }
        lane.items[lane.head++] = FINISHED;
      }
      lane.trim();
      if (lane.head < lane.items.length) next = Math.min(next, lane.items[lane.head].at);
    }
    if (this.#live === 0) this.#reset();
    else this.#arm(next);
    // Last, so a callback that adds or cancels sees a consistent queue.
    for (const item of expired) {
      const onExpire = item.onExpire!;
      item.onExpire = undefined;
      onExpire();
    }
  };

  #arm(at: number): void {
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timerAt = at;
    this.#timer = this.#clock.setTimer(this.#expire, Math.max(0, at - this.#clock.now()));
  }

  /** Nothing is pending: no timer may be left behind (a server stopping, a test ending). */
  #reset(): void {
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#lanes.clear();
  }
}
