/**
 * @module KV single-flight: identical OCAP requests share one origin call across isolates,
 * processes and regions, and its answer for a TTL.
 *
 * In one isolate, concurrent callers of a key share a promise. Across isolates, the first takes a
 * lease on `["ocap","lease",key]` with an atomic check-and-set; the others wait for the result
 * key (kv.watch where it reports, polling every 10–25 ms otherwise) and take over a lease whose
 * deadline passed, by another {@linkcode LEASE_MARGIN_MS} for clocks that differ, without a
 * result (its owner crashed). Fail closed: the lease outlives the owner's origin timeout by
 * {@linkcode LEASE_MARGIN_MS}, the owner aborts its call at that timeout (earlier when the store
 * was slow to grant the lease), and a waiter that runs out of patience answers 504
 * `ocap_wait_timeout` without calling the origin.
 */
import { HttpError } from "../http_error.ts";
import { OriginAnswerTooLarge, OriginFailure } from "./call_origin.ts";
import { leaseKey, resultKey } from "./kv_keys.ts";
import { withKvRetry } from "./kv_retry.ts";
import { settleBy, timerDelay } from "./settle_by.ts";
import type { CacheStatus, OriginAnswer } from "./origin_answer.ts";
import { addNotShared, addResult, NOT_SHARED, readResult } from "./response_store.ts";

/**
 * How long a lease outlives its owner's origin timeout (time to store the answer and release it),
 * and again how long past its deadline others leave it alone: their clocks may be ahead of the
 * owner's. Judged on the deadline alone, a waiter 0.5 s ahead took over from an owner whose save
 * took 1.8 s of its 2 s, and called the origin a second time.
 */
export const LEASE_MARGIN_MS = 2_000;
/** First and longest pause between two looks at the store while waiting. */
const POLL_MIN_MS = 10;
const POLL_MAX_MS = 25;

/** What one exchange needs besides its key. */
export interface ExchangeOptions {
  /** How long the answer is shared. */
  ttlMs: number;
  /** The owner aborts its origin call after this long. */
  timeoutMs: number;
  /** Makes the origin call; called only by the owner of the key, with the owner's own signal. */
  callOrigin(signal: AbortSignal): Promise<OriginAnswer>;
}

/** One caller's result. */
export interface Exchange {
  answer: OriginAnswer;
  cache: CacheStatus;
}

interface Lease {
  owner: string;
  /** Milliseconds since the epoch. */
  deadline: number;
}

/** Shares origin calls per dedup key; one instance per isolate. */
export class SingleFlight {
  readonly #kv: Deno.Kv;
  readonly #now: () => number;
  readonly #marginMs: number;
  readonly #inflight = new Map<string, Promise<Exchange>>();

  /** `leaseMarginMs` defaults to {@linkcode LEASE_MARGIN_MS}; tests shorten it. */
  constructor(kv: Deno.Kv, options: { now?: () => number; leaseMarginMs?: number } = {}) {
    this.#kv = kv;
    this.#now = options.now ?? Date.now;
    this.#marginMs = options.leaseMarginMs ?? LEASE_MARGIN_MS;
  }

  /**
   * Answers `key`: from the cache, from another caller's in-flight call, or by calling the origin
   * (then caching any completed answer, whatever its status). Throws {@linkcode OriginFailure}
   * (owner only), 504 `ocap_wait_timeout`, 502 `ocap_response_not_shared` or
   * 503 `ocap_store_unavailable` as {@linkcode HttpError}s.
   */
  async run(key: string, options: ExchangeOptions): Promise<Exchange> {
    // This caller's wait limit (real time, not `now`); it owns a call only if one fits before it.
    const waitUntil = performance.now() + options.timeoutMs + 3 * this.#marginMs;
    while (true) {
      const shared = this.#inflight.get(key);
      if (shared) {
        try {
          const { answer, cache } = await settleBy(
            shared,
            waitUntil - performance.now(),
            waitTimeout,
          );
          return { answer, cache: cache === "hit" ? "hit" : "coalesced" };
        } catch (error) {
          // The owner's call failed and was not cached, or the caller who would have retried it had
          // no time left: try again ourselves, within our own limit.
          if (error instanceof OriginFailure || error instanceof FlightOutOfTime) continue;
          // The owner's caller learns the answer was too large; those sharing it, that it is
          // not shared, as callers in other isolates do.
          if (error instanceof OriginAnswerTooLarge) throw notShared();
          throw error;
        }
      }
      const flight = this.#acrossIsolates(key, options, waitUntil);
      this.#inflight.set(key, flight);
      const forget = () => {
        if (this.#inflight.get(key) === flight) this.#inflight.delete(key);
      };
      flight.then(forget, forget);
      return await flight;
    }
  }

  async #acrossIsolates(
    key: string,
    options: ExchangeOptions,
    waitUntil: number,
  ): Promise<Exchange> {
    const kv = this.#kv;
    let waited = false;
    /** The result's versionstamp when this caller began to wait. */
    let joined: string | null | undefined;
    let pause = POLL_MIN_MS;
    let watcher: ChangeWatcher | undefined;
    try {
      while (true) {
        const [head, leaseEntry] = await withKvRetry(() =>
          kv.getMany<[unknown, Lease]>([resultKey(key), leaseKey(key)])
        );
        // An answer stored while this caller waited is the one it waited for, however near its
        // expiry this isolate's clock (ahead of the owner's, or after a slow save) puts it.
        const now = joined !== undefined && head.versionstamp !== joined ? -Infinity : this.#now();
        const stored = await withKvRetry(() => readResult(kv, key, head, now));
        if (stored.answer === NOT_SHARED) throw notShared();
        if (stored.answer) return { answer: stored.answer, cache: waited ? "coalesced" : "hit" };

        const lease = leaseEntry.value;
        // A margin past the deadline: this isolate's clock may be ahead of the owner's.
        if (!lease || lease.deadline + this.#marginMs <= this.#now()) {
          // A caller that waited (or retries a failed call) owns only a call it can see through
          // within its own wait limit.
          if (performance.now() + options.timeoutMs > waitUntil) {
            throw new FlightOutOfTime("Gave up waiting: no time left for a call of its own");
          }
          // Check the entries as observed: an expired key can stay readable until a sweep.
          const leaseMs = options.timeoutMs + this.#marginMs;
          const mine: Lease = { owner: crypto.randomUUID(), deadline: this.#now() + leaseMs };
          const taken = await withKvRetry(() =>
            kv.atomic()
              .check({ key: resultKey(key), versionstamp: stored.versionstamp })
              .check({ key: leaseKey(key), versionstamp: leaseEntry.versionstamp })
              // Kept as long as others leave it alone, or its removal would hand it over early.
              .set(leaseKey(key), mine, { expireIn: leaseMs + this.#marginMs })
              .commit()
          );
          if (taken.ok) {
            await watcher?.close();
            watcher = undefined;
            return await this.#own(key, options, { ...mine, version: taken.versionstamp });
          }
          continue; // Someone else moved first: look again.
        }

        if (performance.now() >= waitUntil) {
          throw new FlightOutOfTime("Gave up waiting for another caller's identical OCAP request");
        }
        waited = true;
        joined ??= stored.versionstamp;
        watcher ??= new ChangeWatcher(kv, [resultKey(key), leaseKey(key)]);
        await watcher.next(Math.min(pause, Math.max(1, waitUntil - performance.now())));
        pause = Math.min(POLL_MAX_MS, pause * 1.5);
      }
    } finally {
      await watcher?.close();
    }
  }

  async #own(
    key: string,
    options: ExchangeOptions,
    lease: Lease & { version: string },
  ): Promise<Exchange> {
    const kv = this.#kv;
    const leaseVersion = lease.version;
    // The lease's deadline was set before its commit, which a slow store can stretch: the call
    // ends a margin before that deadline, never a whole timeout after the commit, so nobody can
    // take the lease over while it runs.
    const callMs = Math.min(options.timeoutMs, lease.deadline - this.#marginMs - this.#now());
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new DOMException("OCAP origin call timed out", "TimeoutError")),
      timerDelay(callMs),
    );
    let answer: OriginAnswer;
    try {
      if (callMs <= 0) {
        throw new HttpError(
          503,
          "ocap_store_unavailable",
          "The OCAP store took the whole origin timeout to grant the lease",
        );
      }
      answer = await options.callOrigin(controller.signal);
    } catch (error) {
      // Release at once so a waiter can try; if this fails the lease simply runs out. An answer
      // too large to read was still an answer: record that, so nobody calls the origin again.
      const spent = error instanceof OriginAnswerTooLarge;
      await withKvRetry(() => {
        const op = kv.atomic().check({ key: leaseKey(key), versionstamp: leaseVersion });
        if (spent) addNotShared(op, key, this.#keep(options.ttlMs));
        return op.delete(leaseKey(key)).commit();
      }).catch(() => {});
      throw error;
    } finally {
      clearTimeout(timer);
    }
    try {
      const stored = await withKvRetry(() => {
        const op = kv.atomic().check({ key: leaseKey(key), versionstamp: leaseVersion });
        addResult(op, key, answer, this.#keep(options.ttlMs));
        return op.delete(leaseKey(key)).commit();
      });
      if (!stored.ok) log("ocap lease was lost before the answer was stored");
    } catch (error) {
      // The origin already answered (a one-time code is spent): the caller still gets it.
      log("ocap could not store an answer", (error as Error).cause ?? error);
    }
    return { answer, cache: "miss" };
  }

  /**
   * How long a stored answer (or marker) lives: the TTL plus the margin the instances' clocks may
   * differ by. Every reader judges expiry by its own clock, and one ahead of the owner's by more
   * than the TTL would read a fresh answer as expired and redeem the code again.
   */
  #keep(ttlMs: number): { expiresAt: number; ttlMs: number } {
    const keepMs = ttlMs + this.#marginMs;
    return { expiresAt: this.#now() + keepMs, ttlMs: keepMs };
  }
}

/**
 * The 504 of the caller a flight was started for, when its own wait limit is reached or leaves
 * no room for a whole origin call. Callers sharing the flight in this isolate have limits of
 * their own, so they try again rather than give up with it.
 */
class FlightOutOfTime extends HttpError {
  constructor(message: string) {
    super(504, "ocap_wait_timeout", message);
  }
}

function notShared(): HttpError {
  return new HttpError(
    502,
    "ocap_response_not_shared",
    "The origin's answer to this request was too large to share between callers",
  );
}

function waitTimeout(): HttpError {
  return new HttpError(
    504,
    "ocap_wait_timeout",
    "Gave up waiting for another caller's identical OCAP request",
  );
}

function log(msg: string, error?: unknown): void {
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : undefined;
  console.error(JSON.stringify({ msg, ...(detail ? { error: detail } : {}) }));
}

/**
 * Resolves `next()` on the first change kv.watch reports for `keys`, or after a pause: kv.watch
 * does not see writes by other processes on a local SQLite file, so polling stays the baseline.
 */
class ChangeWatcher {
  /** Absent when kv.watch is unavailable, ended or failed: then `next()` only pauses. */
  #reader?: ReadableStreamDefaultReader<unknown>;
  #pending?: Promise<void>;

  constructor(kv: Deno.Kv, keys: Deno.KvKey[]) {
    try {
      this.#reader = kv.watch(keys).getReader();
    } catch {
      return; // Polling alone still keeps the guarantee.
    }
    this.#pending = this.#read(); // The first event reports the current values.
  }

  async next(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const pause = new Promise<void>((resolve) => (timer = setTimeout(resolve, timerDelay(ms))));
    if (this.#reader) this.#pending ??= this.#read();
    await Promise.race(this.#pending ? [this.#pending, pause] : [pause]);
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    const reader = this.#reader;
    this.#reader = undefined;
    await reader?.cancel().catch(() => {});
  }

  #read(): Promise<void> {
    return this.#reader!.read().then(({ done }) => {
      this.#pending = undefined;
      if (done) this.#reader = undefined;
    }, () => {
      this.#pending = undefined;
      this.#reader = undefined;
    });
  }
}
