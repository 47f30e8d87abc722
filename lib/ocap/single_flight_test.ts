import assert from "node:assert/strict";
import { HttpError } from "../http_error.ts";
import { OriginFailure } from "./call_origin.ts";
import { leaseKey, resultKey } from "./kv_keys.ts";
import type { OriginAnswer } from "./origin_answer.ts";
import { addResult, MAX_CACHED_BODY_BYTES } from "./response_store.ts";
import { type ExchangeOptions, LEASE_MARGIN_MS, SingleFlight } from "./single_flight.ts";

const KEY = "0".repeat(64);

function answer(status: number, text: string): OriginAnswer {
  return {
    status,
    statusText: "",
    headers: [["content-type", "text/plain"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]],
    body: new TextEncoder().encode(text),
  };
}

/** An origin that counts its calls and answers after `delayMs`. */
function countingOrigin(result: () => OriginAnswer, delayMs = 30) {
  const origin = {
    calls: 0,
    options(overrides: Partial<ExchangeOptions> = {}): ExchangeOptions {
      return {
        ttlMs: 30_000,
        timeoutMs: 1_000,
        callOrigin: async (signal) => {
          origin.calls++;
          await new Promise((resolve) => setTimeout(resolve, delayMs));
          signal.throwIfAborted();
          return result();
        },
        ...overrides,
      };
    },
  };
  return origin;
}

async function withKv(fn: (kv: Deno.Kv) => Promise<void>): Promise<void> {
  const kv = await Deno.openKv(":memory:");
  try {
    await fn(kv);
  } finally {
    kv.close();
  }
}

const text = (a: OriginAnswer) => new TextDecoder().decode(a.body);

Deno.test("SingleFlight.run() shares one origin call between concurrent callers", async () => {
  await withKv(async (kv) => {
    const flights = new SingleFlight(kv);
    const origin = countingOrigin(() => answer(200, "token"));
    const results = await Promise.all(
      Array.from({ length: 20 }, () => flights.run(KEY, origin.options())),
    );
    assert.equal(origin.calls, 1);
    assert.deepEqual(results.map((r) => r.cache).sort(), [...Array(19).fill("coalesced"), "miss"]);
    for (const r of results) assert.equal(text(r.answer), "token");
  });
});

Deno.test("SingleFlight.run() shares one origin call between two isolates on one store", async () => {
  await withKv(async (kv) => {
    const a = new SingleFlight(kv);
    const b = new SingleFlight(kv);
    const origin = countingOrigin(() => answer(400, '{"error":"invalid_grant"}'), 80);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).run(KEY, origin.options())),
    );
    assert.equal(origin.calls, 1);
    assert.equal(results.filter((r) => r.cache === "miss").length, 1);
    for (const r of results) {
      assert.equal(r.answer.status, 400);
      assert.equal(text(r.answer), '{"error":"invalid_grant"}');
      assert.deepEqual(r.answer.headers.filter(([n]) => n === "set-cookie").length, 2);
    }
  });
});

Deno.test("SingleFlight.run() serves the cached answer until its TTL (and the clock margin) passes", async () => {
  await withKv(async (kv) => {
    let clock = 1_000_000;
    const flights = new SingleFlight(kv, { now: () => clock });
    let n = 0;
    const origin = countingOrigin(() => answer(200, `answer ${++n}`), 1);
    const first = await flights.run(KEY, origin.options({ ttlMs: 30_000 }));
    // Kept LEASE_MARGIN_MS longer: another instance's clock may be that far ahead.
    clock += 30_000 + LEASE_MARGIN_MS - 1;
    const second = await flights.run(KEY, origin.options({ ttlMs: 30_000 }));
    clock += 1;
    const third = await flights.run(KEY, origin.options({ ttlMs: 30_000 }));
    assert.deepEqual([first.cache, second.cache, third.cache], ["miss", "hit", "miss"]);
    assert.deepEqual([text(first.answer), text(second.answer), text(third.answer)], [
      "answer 1",
      "answer 1",
      "answer 2",
    ]);
    assert.equal(origin.calls, 2);
  });
});

Deno.test("SingleFlight.run() does not cache an origin failure: a waiter becomes the next owner", async () => {
  await withKv(async (kv) => {
    const a = new SingleFlight(kv);
    const b = new SingleFlight(kv);
    let calls = 0;
    const options: ExchangeOptions = {
      ttlMs: 30_000,
      timeoutMs: 1_000,
      callOrigin: async () => {
        calls++;
        await new Promise((resolve) => setTimeout(resolve, 50));
        if (calls === 1) throw new OriginFailure(502, "upstream_unavailable", "down");
        return answer(200, "second try");
      },
    };
    const settled = await Promise.allSettled([
      a.run(KEY, options),
      a.run(KEY, options),
      b.run(KEY, options),
    ]);
    assert.equal(calls, 2);
    const failed = settled.filter((s) => s.status === "rejected");
    assert.equal(failed.length, 1);
    assert.ok((failed[0] as PromiseRejectedResult).reason instanceof OriginFailure);
    const ok = settled.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
    assert.deepEqual(ok.map((r) => text(r.answer)), ["second try", "second try"]);
    assert.deepEqual(ok.map((r) => r.cache).sort(), ["coalesced", "miss"]);
  });
});

Deno.test("SingleFlight.run() waiters answer within their wait limit, and retry only a call they can see through", async () => {
  await withKv(async (kv) => {
    // Wait limit: timeout 300 ms + 3 × margin 240 ms = 1,020 ms from the start. (At a third of
    // that the last retry had 40 ms to spare, which a loaded CI machine took.)
    const flights = new SingleFlight(kv, { leaseMarginMs: 240 });
    let calls = 0;
    const options: ExchangeOptions = {
      ttlMs: 3_000,
      timeoutMs: 300,
      callOrigin: (signal) => {
        calls++;
        return new Promise((_, reject) =>
          signal.addEventListener(
            "abort",
            () => reject(new OriginFailure(504, "upstream_timeout", "the provider hangs")),
          )
        );
      },
    };
    const started = performance.now();
    const took: number[] = [];
    const outcomes = await Promise.allSettled(
      [0, 1, 2, 3].map(() =>
        flights.run(KEY, options).finally(() => took.push(performance.now() - started))
      ),
    );
    // The owner times out at 300 ms; waiters retry at 300 and 600 ms (each ends by 1,020 ms); at
    // 900 ms another retry could not end before the limit, so the last gives up without calling.
    assert.equal(calls, 3);
    const codes = outcomes.map((o) => o.status === "rejected" ? o.reason.code : "answered");
    assert.deepEqual(codes.sort(), [
      "ocap_wait_timeout",
      "upstream_timeout",
      "upstream_timeout",
      "upstream_timeout",
    ]);
    for (const ms of took) assert.ok(ms < 1_020 + 150, `a caller answered after ${ms} ms`);
  });
});

Deno.test("SingleFlight.run() a waiter with time left retries even when the waiter it joined had none", async () => {
  await withKv(async (kv) => {
    // timeout 300 ms + 3 × margin 60 ms: a caller waits at most 480 ms from its own start.
    const flights = new SingleFlight(kv, { leaseMarginMs: 60 });
    let calls = 0;
    const options: ExchangeOptions = {
      ttlMs: 30_000,
      timeoutMs: 300,
      callOrigin: async () => {
        if (++calls > 1) return answer(200, "second try");
        await new Promise((resolve) => setTimeout(resolve, 250));
        throw new OriginFailure(502, "upstream_unavailable", "connection reset");
      },
    };
    const owner = flights.run(KEY, options);
    const early = flights.run(KEY, options); // limit 480 ms: a retry at 250 ms does not fit
    await new Promise((resolve) => setTimeout(resolve, 200));
    const late = flights.run(KEY, options); // limit 680 ms: a retry at 250 ms fits
    const [o, e, l] = await Promise.allSettled([owner, early, late]);
    assert.ok(o.status === "rejected" && o.reason instanceof OriginFailure);
    assert.ok(e.status === "rejected" && e.reason.code === "ocap_wait_timeout");
    assert.ok(l.status === "fulfilled", `late: ${l.status === "rejected" && l.reason.code}`);
    assert.equal(text(l.value.answer), "second try");
    assert.equal(calls, 2);
  });
});

Deno.test("SingleFlight.run() a waiter with time left keeps waiting when the waiter it joined runs out", async () => {
  await withKv(async (kv) => {
    // timeout 300 ms + 3 × margin 60 ms: a caller waits at most 480 ms from its own start.
    const flights = new SingleFlight(kv, { leaseMarginMs: 60 });
    const origin = countingOrigin(() => answer(200, "never"));
    // Another instance owns the key, and keeps it past the first caller's limit.
    await kv.set(leaseKey(KEY), { owner: "other", deadline: Date.now() + 700 }, { expireIn: 700 });
    // Settled at once: the first caller gives up (at 480 ms) while this test is still sleeping.
    const settle = <T>(p: Promise<T>) => Promise.allSettled([p]).then(([r]) => r);
    const first = settle(flights.run(KEY, origin.options({ timeoutMs: 300 })));
    await new Promise((resolve) => setTimeout(resolve, 250));
    const second = settle(flights.run(KEY, origin.options({ timeoutMs: 300 }))); // limit 730 ms
    await new Promise((resolve) => setTimeout(resolve, 310)); // 560 ms: the other instance answers
    const op = kv.atomic();
    addResult(op, KEY, answer(200, "from the other instance"), {
      expiresAt: Date.now() + 30_000,
      ttlMs: 30_000,
    });
    await op.delete(leaseKey(KEY)).commit();
    const [f, s] = await Promise.all([first, second]);
    assert.ok(f.status === "rejected" && f.reason.code === "ocap_wait_timeout");
    assert.ok(s.status === "fulfilled", `second: ${s.status === "rejected" && s.reason.code}`);
    assert.equal(text(s.value.answer), "from the other instance");
    assert.equal(origin.calls, 0);
  });
});

Deno.test("SingleFlight.run() takes over a lease whose deadline passed without a result", async () => {
  await withKv(async (kv) => {
    // A crashed owner's lease: its deadline is past but the entry is still readable.
    await kv.set(leaseKey(KEY), { owner: "crashed", deadline: Date.now() - 1 });
    const flights = new SingleFlight(kv);
    const origin = countingOrigin(() => answer(200, "taken over"));
    const result = await flights.run(KEY, origin.options());
    assert.equal(result.cache, "miss");
    assert.equal(origin.calls, 1);
    assert.equal((await kv.get(leaseKey(KEY))).value, null, "lease released on completion");
  });
});

Deno.test("SingleFlight.run() waits for a live lease to run out, then takes over", async () => {
  await withKv(async (kv) => {
    // Taken over at deadline + margin (350 ms); the wait limit (timeout + 3 margins, 800 ms)
    // leaves 250 ms beyond the 200 ms call (with a 100 ms margin, 50 ms: too few under load).
    await kv.set(leaseKey(KEY), { owner: "crashed", deadline: Date.now() + 150 });
    const flights = new SingleFlight(kv, { leaseMarginMs: 200 });
    const origin = countingOrigin(() => answer(200, "taken over"));
    const started = performance.now();
    const result = await flights.run(KEY, origin.options({ timeoutMs: 200 }));
    assert.ok(performance.now() - started >= 140);
    assert.equal(result.cache, "miss");
    assert.equal(origin.calls, 1);
  });
});

Deno.test("SingleFlight.run() answers 504 ocap_wait_timeout without calling the origin", async () => {
  await withKv(async (kv) => {
    await kv.set(leaseKey(KEY), { owner: "slow", deadline: Date.now() + 60_000 });
    const flights = new SingleFlight(kv, { leaseMarginMs: 50 });
    const origin = countingOrigin(() => answer(200, "never"));
    await assert.rejects(
      flights.run(KEY, origin.options({ timeoutMs: 100 })),
      (error: unknown) =>
        error instanceof HttpError && error.status === 504 &&
        error.code === "ocap_wait_timeout",
    );
    assert.equal(origin.calls, 0);
  });
});

Deno.test("SingleFlight.run() aborts the owner's origin call at its timeout", async () => {
  await withKv(async (kv) => {
    const flights = new SingleFlight(kv, { leaseMarginMs: 50 });
    let aborted = false;
    await assert.rejects(
      flights.run(KEY, {
        ttlMs: 1_000,
        timeoutMs: 50,
        callOrigin: (signal) =>
          new Promise((_, reject) =>
            signal.addEventListener("abort", () => {
              aborted = true;
              reject(new OriginFailure(504, "upstream_timeout", "timed out"));
            })
          ),
      }),
      OriginFailure,
    );
    assert.ok(aborted);
    assert.equal((await kv.get(leaseKey(KEY))).value, null, "lease released on failure");
  });
});

/**
 * `kv` whose atomic commits number `which` (1-based) are slow by `delayMs`: held back before they
 * reach the store (a slow write), or confirmed late after they were written (a slow answer).
 */
function slowCommit(
  kv: Deno.Kv,
  ...slow: Array<{ which: number; delayMs: number; confirmLate?: boolean }>
): Deno.Kv {
  let n = 0;
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  return withAtomic(kv, (op) => {
    const commit = op.commit.bind(op);
    op.commit = async () => {
      const number = ++n;
      const delay = slow.find((s) => s.which === number);
      if (delay && !delay.confirmLate) await pause(delay.delayMs);
      const result = await commit();
      if (delay?.confirmLate) await pause(delay.delayMs);
      return result;
    };
  });
}

/** `kv` whose every `atomic()` operation `change` alters before the caller uses it. */
function withAtomic(kv: Deno.Kv, change: (op: Deno.AtomicOperation) => void): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          change(op);
          return op;
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** `kv` whose atomic commits move `clock` on by `stepMs` once they are written. */
function clockMovingCommits(kv: Deno.Kv, clock: { ms: number }, stepMs: number): Deno.Kv {
  return withAtomic(kv, (op) => {
    const commit = op.commit.bind(op);
    op.commit = async () => {
      const result = await commit();
      clock.ms += stepMs;
      return result;
    };
  });
}

Deno.test("SingleFlight.run() double spend: a slow lease commit cannot stretch the owner's call past its lease", async () => {
  await withKv(async (kv) => {
    // The lease is written at once but confirmed 400 ms later. Its deadline counts from before
    // the commit, so the owner must give up its call by then, not a whole timeout after the
    // confirmation, or another isolate takes the expired lease and calls the origin again.
    const a = new SingleFlight(slowCommit(kv, { which: 1, delayMs: 400, confirmLate: true }), {
      leaseMarginMs: 100,
    });
    const b = new SingleFlight(kv, { leaseMarginMs: 100 });
    let calls = 0;
    let inFlight = 0;
    let mostInFlight = 0;
    const options: ExchangeOptions = {
      ttlMs: 5_000,
      timeoutMs: 500,
      callOrigin: (signal) => {
        mostInFlight = Math.max(mostInFlight, ++inFlight);
        if (++calls > 1) {
          inFlight--;
          return Promise.resolve(answer(200, "second call"));
        }
        return new Promise((_, reject) =>
          signal.addEventListener("abort", () => {
            inFlight--;
            reject(new OriginFailure(504, "upstream_timeout", "timed out"));
          })
        );
      },
    };
    const first = Promise.allSettled([a.run(KEY, options)]);
    // A caller arriving after the lease's deadline (600 ms) finds it expired and may own a call.
    await new Promise((resolve) => setTimeout(resolve, 650));
    const [[owner], [other]] = await Promise.all([
      first,
      Promise.allSettled([b.run(KEY, options)]),
    ]);
    assert.equal(owner.status, "rejected");
    assert.equal(mostInFlight, 1, "two origin calls at once for one key");
    assert.equal(other.status, "fulfilled");
  });
});

Deno.test("SingleFlight.run() answers 503 without calling the origin when the lease took the whole timeout", async () => {
  await withKv(async (kv) => {
    const flights = new SingleFlight(
      slowCommit(kv, { which: 1, delayMs: 600, confirmLate: true }),
      { leaseMarginMs: 100 },
    );
    const origin = countingOrigin(() => answer(200, "never"));
    await assert.rejects(
      flights.run(KEY, origin.options({ timeoutMs: 500 })),
      (error: unknown) => error instanceof HttpError && error.code === "ocap_store_unavailable",
    );
    assert.equal(origin.calls, 0);
    assert.equal((await kv.get(leaseKey(KEY))).value, null, "lease released");
  });
});

Deno.test("SingleFlight.run() double spend: a lease commit that took exactly the whole timeout leaves no time for an origin call", async () => {
  await withKv(async (kv) => {
    // 0 ms left is no time: an origin called and aborted at once may still have spent the code.
    const clock = { ms: 1_000_000 };
    const flights = new SingleFlight(clockMovingCommits(kv, clock, 500), {
      now: () => clock.ms,
      leaseMarginMs: 100,
    });
    const origin = countingOrigin(() => answer(200, "never"));
    await assert.rejects(
      flights.run(KEY, origin.options({ timeoutMs: 500 })),
      (error: unknown) => error instanceof HttpError && error.code === "ocap_store_unavailable",
    );
    assert.equal(origin.calls, 0, "the origin was called with no time left");
  });
});

Deno.test("SingleFlight.run() stores a large answer in chunks and reads it whole elsewhere", async () => {
  await withKv(async (kv) => {
    const big = "x".repeat(200 * 1024) + "end";
    const origin = countingOrigin(() => answer(200, big), 1);
    const first = await new SingleFlight(kv).run(KEY, origin.options());
    const second = await new SingleFlight(kv).run(KEY, origin.options());
    assert.deepEqual([first.cache, second.cache], ["miss", "hit"]);
    assert.equal(text(second.answer), big);
    assert.equal(origin.calls, 1);
  });
});

Deno.test("SingleFlight.run() shares an answer above the cache cap only within the isolate", async () => {
  await withKv(async (kv) => {
    const huge = "y".repeat(MAX_CACHED_BODY_BYTES + 1);
    const origin = countingOrigin(() => answer(200, huge), 50);
    const a = new SingleFlight(kv);
    const [first, second] = await Promise.all([
      a.run(KEY, origin.options()),
      a.run(KEY, origin.options()),
    ]);
    assert.equal(text(first.answer).length, huge.length);
    assert.equal(text(second.answer).length, huge.length);
    await assert.rejects(
      new SingleFlight(kv).run(KEY, origin.options()),
      (error: unknown) => error instanceof HttpError && error.code === "ocap_response_not_shared",
    );
    assert.equal(origin.calls, 1);
  });
});

Deno.test("SingleFlight.run() answers 503 ocap_store_unavailable when the store fails", async () => {
  const kv = await Deno.openKv(":memory:");
  kv.close();
  const origin = countingOrigin(() => answer(200, "never"));
  await assert.rejects(
    new SingleFlight(kv).run(KEY, origin.options()),
    (error: unknown) =>
      error instanceof HttpError && error.status === 503 &&
      error.code === "ocap_store_unavailable",
  );
  assert.equal(origin.calls, 0);
});

Deno.test("SingleFlight.run() ignores an expired result that is still readable", async () => {
  await withKv(async (kv) => {
    await kv.set(resultKey(KEY), {
      v: 1,
      expires_at: Date.now() - 1,
      write_id: "old",
      kind: "answer",
      status: 200,
      headers: [],
      body: new TextEncoder().encode("stale"),
      size: 5,
    });
    const origin = countingOrigin(() => answer(200, "fresh"), 1);
    const result = await new SingleFlight(kv).run(KEY, origin.options());
    assert.equal(result.cache, "miss");
    assert.equal(text(result.answer), "fresh");
  });
});

Deno.test("SingleFlight.run() caches a small body that is a view on a large buffer", async () => {
  await withKv(async (kv) => {
    const buffer = new Uint8Array(100_000);
    buffer.set(new TextEncoder().encode("small"));
    const origin = countingOrigin(() => ({ ...answer(200, ""), body: buffer.subarray(0, 5) }), 1);
    await new SingleFlight(kv).run(KEY, origin.options());
    const again = await new SingleFlight(kv).run(KEY, origin.options());
    assert.equal(again.cache, "hit");
    assert.equal(text(again.answer), "small");
  });
});

/**
 * A view of `kv` whose kv.watch fails as `watch` says (or whose stream ends at once, as a KV
 * Connect watch the remote cuts), counting reads.
 */
function brokenWatch(kv: Deno.Kv, watch: "throws" | "errors" | "ends") {
  const view = {
    reads: 0,
    getMany: (keys: Deno.KvKey[]) => {
      view.reads++;
      return kv.getMany(keys);
    },
    list: (selector: Deno.KvListSelector) => kv.list(selector),
    atomic: () => kv.atomic(),
    watch: () => {
      if (watch === "throws") throw new TypeError("watch is not supported");
      if (watch === "ends") return new ReadableStream({ start: (c) => c.close() });
      return new ReadableStream({ start: (c) => c.error(new Error("watch stream failed")) });
    },
  };
  return view;
}

for (const watch of ["throws", "errors", "ends"] as const) {
  Deno.test(`SingleFlight.run() falls back to bounded polling when kv.watch ${watch}`, async () => {
    await withKv(async (kv) => {
      const view = brokenWatch(kv, watch);
      const origin = countingOrigin(() => answer(200, "polled"), 300);
      const [owner, waiter] = await Promise.all([
        new SingleFlight(kv).run(KEY, origin.options()),
        new Promise((r) => setTimeout(r, 20)).then(() =>
          new SingleFlight(view as unknown as Deno.Kv).run(KEY, origin.options())
        ),
      ]);
      assert.equal(owner.cache, "miss");
      assert.equal(waiter.cache, "coalesced");
      assert.equal(text(waiter.answer), "polled");
      assert.equal(origin.calls, 1);
      // About 280 ms of waiting at 10–25 ms per look; a busy loop would read thousands of times.
      assert.ok(view.reads <= 40, `${view.reads} reads while waiting`);
    });
  });
}

Deno.test("SingleFlight.run() keeps polling every 10–25 ms however long it waits, so a waiter gets a stored answer soon", async () => {
  await withKv(async (kv) => {
    // As on a SQLite file shared by processes, where kv.watch never sees the other's writes.
    const view = brokenWatch(kv, "throws");
    const origin = countingOrigin(() => answer(200, "slow"), 2_000);
    const [, waiter] = await Promise.all([
      new SingleFlight(kv).run(KEY, origin.options({ timeoutMs: 5_000 })),
      new Promise((r) => setTimeout(r, 20)).then(() =>
        new SingleFlight(view as unknown as Deno.Kv).run(KEY, origin.options({ timeoutMs: 5_000 }))
      ),
    ]);
    assert.equal(waiter.cache, "coalesced");
    // About 80 looks in 2 s; a pause that kept growing looked a dozen times, the last one a second
    // or more after the answer was there. Fewer than 25 only if timers ran 3× late throughout.
    assert.ok(view.reads >= 25, `${view.reads} reads in 2 s of waiting`);
  });
});

/**
 * An owner whose save (its second commit; the first took the lease) takes 1.8 s, within the 2 s a
 * store call may take, and a waiter that joins 50 ms in with a clock `aheadMs` ahead: what each
 * got and how often the origin was called.
 */
async function slowSaveSkewedWaiter(
  kv: Deno.Kv,
  { aheadMs, firstCallMs, ...options }: {
    aheadMs: number;
    firstCallMs: number;
    ttlMs: number;
    timeoutMs: number;
  },
) {
  const owner = new SingleFlight(slowCommit(kv, { which: 2, delayMs: 1_800 }));
  const waiter = new SingleFlight(kv, { now: () => Date.now() + aheadMs });
  let calls = 0;
  const exchange: ExchangeOptions = {
    ...options,
    callOrigin: async () => {
      const call = ++calls;
      if (call === 1) await new Promise((resolve) => setTimeout(resolve, firstCallMs));
      return answer(200, `token-${call}`);
    },
  };
  const first = owner.run(KEY, exchange);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const [owned, waited] = await Promise.all([first, waiter.run(KEY, exchange)]);
  return { owned: text(owned.answer), waited: text(waited.answer), cache: waited.cache, calls };
}

Deno.test("OCAP double spend: a waiter whose clock is ahead does not take over while the owner saves", async () => {
  await withKv(async (kv) => {
    // The owner's answer comes at 950 ms of its 1000 ms timeout. The waiter's clock is 0.5 s
    // ahead: judged on the deadline alone, it took the lease over and called the origin again.
    const got = await slowSaveSkewedWaiter(kv, {
      aheadMs: 500,
      firstCallMs: 950,
      ttlMs: 30_000,
      timeoutMs: 1_000,
    });
    assert.deepEqual([got.owned, got.waited, got.calls], ["token-1", "token-1", 1]);
  });
});

/** `kv`, except that the first `getMany` answers what it read only once `gate` opens. */
function staleFirstRead(kv: Deno.Kv, gate: Promise<void>): Deno.Kv {
  let first = true;
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "getMany") {
        return async (keys: Deno.KvKey[]) => {
          const entries = await target.getMany(keys);
          if (first) {
            first = false;
            await gate;
          }
          return entries;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("SingleFlight.run() double spend: a caller whose look found nothing does not call again once another caller's answer is stored", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const options = {
      ttlMs: 30_000,
      timeoutMs: 1_000,
      callOrigin: (): Promise<OriginAnswer> => {
        calls++;
        return Promise.resolve({
          status: 200,
          statusText: "",
          headers: [["content-type", "text/plain"]],
          body: new TextEncoder().encode(`answer ${calls}`),
        });
      },
    };
    // B looks first and sees neither a lease nor an answer; its look is held back while A owns
    // the call, stores the answer and releases the lease.
    const late = new SingleFlight(staleFirstRead(kv, gate)).run(KEY, options);
    await new Promise((resolve) => setTimeout(resolve, 30));
    const first = await new SingleFlight(kv).run(KEY, options);
    assert.equal(first.cache, "miss");
    release();
    const second = await late;
    assert.equal(calls, 1, "the origin was called twice for one key");
    assert.equal(new TextDecoder().decode(second.answer.body), "answer 1");
  } finally {
    kv.close();
  }
});

Deno.test("SingleFlight.run() code replay: an answer whose headers are too large to cache is not fetched again by another isolate", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    let calls = 0;
    const options = {
      ttlMs: 30_000,
      timeoutMs: 300,
      callOrigin: (): Promise<OriginAnswer> => {
        calls++;
        // 80 cookies of 1 KiB: more header bytes than one KV value (64 KiB) holds.
        const headers: Array<[string, string]> = Array.from(
          { length: 80 },
          (_, i) => ["set-cookie", `c${i}=${"v".repeat(1024)}`],
        );
        return Promise.resolve({
          status: 200,
          statusText: "",
          headers,
          body: new TextEncoder().encode('{"access_token":"t"}'),
        });
      },
    };
    const first = await new SingleFlight(kv, { leaseMarginMs: 100 }).run(KEY, options);
    assert.equal(first.answer.headers.length, 80);
    // Another isolate, once any lease has run out (timeout + 2 margins): still not a second call.
    await new Promise((resolve) => setTimeout(resolve, 600));
    await assert.rejects(
      new SingleFlight(kv, { leaseMarginMs: 100 }).run(KEY, options),
      (error: unknown) => error instanceof HttpError && error.code === "ocap_response_not_shared",
    );
    assert.equal(calls, 1, "the origin was called again for one key");
  } finally {
    kv.close();
  }
});

Deno.test("SingleFlight.run() double spend: an answer stored while a caller waits is its answer, even when a slow save and a clock 1.5 s ahead put it past a 1 s TTL", async () => {
  await withKv(async (kv) => {
    // The owner's answer comes at 100 ms; it is kept 1 s + 2 s from just before its save. The
    // waiter's clock is 1.5 s ahead (under the 2 s docs/ocap.md allows): by it, the answer it
    // sees appear at ~1.9 s expired at ~3.1 s - 1.5 s = 1.6 s.
    const got = await slowSaveSkewedWaiter(kv, {
      aheadMs: 1_500,
      firstCallMs: 100,
      ttlMs: 1_000,
      timeoutMs: 5_000,
    });
    assert.deepEqual([got.owned, got.waited, got.cache, got.calls], [
      "token-1",
      "token-1",
      "coalesced",
      1,
    ]);
  });
});

Deno.test("SingleFlight.run() metrics: callers in one isolate that share a read of the cache are each a hit, not coalesced", async () => {
  await withKv(async (kv) => {
    const flights = new SingleFlight(kv);
    const op = kv.atomic();
    addResult(op, KEY, answer(200, "cached"), { expiresAt: Date.now() + 30_000, ttlMs: 30_000 });
    assert.ok((await op.commit()).ok);
    let calls = 0;
    const options: ExchangeOptions = {
      ttlMs: 30_000,
      timeoutMs: 1_000,
      callOrigin: () => {
        calls++;
        return Promise.resolve(answer(200, "called"));
      },
    };
    // Started together: the second shares the first's in-flight read of the store.
    const results = await Promise.all([flights.run(KEY, options), flights.run(KEY, options)]);
    assert.equal(calls, 0);
    assert.deepEqual(results.map((r) => text(r.answer)), ["cached", "cached"]);
    assert.deepEqual(results.map((r) => r.cache), ["hit", "hit"]);
  });
});

Deno.test("SingleFlight.run() double spend: an owner whose call failed after its lease was taken over leaves the new owner's lease alone", async () => {
  await withKv(async (kv) => {
    const flights = new SingleFlight(kv);
    const taker = { owner: "took-over", deadline: Date.now() + 60_000 };
    await assert.rejects(
      flights.run(KEY, {
        ttlMs: 30_000,
        timeoutMs: 1_000,
        callOrigin: async () => {
          // Another instance (its clock far ahead) took the lease over while this call ran.
          await kv.set(leaseKey(KEY), taker);
          throw new OriginFailure(502, "upstream_unavailable", "down");
        },
      }),
      OriginFailure,
    );
    // Released anyway, a third caller would see no lease and call the origin beside the new owner.
    assert.deepEqual((await kv.get(leaseKey(KEY))).value, taker);
  });
});

Deno.test("SingleFlight.run() double spend: an owner whose lease was taken over neither stores its answer nor drops the new owner's lease", async () => {
  await withKv(async (kv) => {
    const flights = new SingleFlight(kv);
    const taker = { owner: "took-over", deadline: Date.now() + 60_000 };
    const result = await flights.run(KEY, {
      ttlMs: 30_000,
      timeoutMs: 1_000,
      callOrigin: async () => {
        await kv.set(leaseKey(KEY), taker);
        return answer(200, "late");
      },
    });
    // The late owner's caller still gets what the origin said (the code is spent).
    assert.equal(text(result.answer), "late");
    assert.deepEqual((await kv.get(leaseKey(KEY))).value, taker);
    assert.equal((await kv.get(resultKey(KEY))).value, null);
  });
});

Deno.test("SingleFlight.run() tells the operator when an owner's lease was lost before its answer was stored", async () => {
  await withKv(async (kv) => {
    const flights = new SingleFlight(kv);
    const logged: string[] = [];
    const original = console.error;
    console.error = (line: string) => logged.push(line);
    try {
      await flights.run(KEY, {
        ttlMs: 30_000,
        timeoutMs: 1_000,
        callOrigin: async () => {
          await kv.set(leaseKey(KEY), { owner: "took-over", deadline: Date.now() + 60_000 });
          return answer(200, "late");
        },
      });
    } finally {
      console.error = original;
    }
    assert.deepEqual(logged.map((line) => JSON.parse(line).msg), [
      "ocap lease was lost before the answer was stored",
    ]);
  });
});

Deno.test("SingleFlight.run() double spend: after a slow lease commit the owner still keeps a whole margin for its save, against a waiter whose clock is ahead", async () => {
  await withKv(async (kv) => {
    // Margin 200 ms, timeout 200 ms: the lease's deadline is 400 ms from just before its commit,
    // which is confirmed 180 ms late. The owner's call must end a margin before that deadline
    // (at 200 ms), so a save within the margin (190 ms here) ends before a waiter 150 ms ahead
    // takes the lease over (deadline + margin by its clock, 450 ms). The origin answers 190 ms
    // into the call: running on to the deadline, the owner got it and was still saving it when
    // the waiter called the origin again.
    const a = new SingleFlight(
      slowCommit(
        kv,
        { which: 1, delayMs: 180, confirmLate: true },
        { which: 2, delayMs: 190 },
      ),
      { leaseMarginMs: 200 },
    );
    const b = new SingleFlight(kv, { leaseMarginMs: 200, now: () => Date.now() + 150 });
    let calls = 0;
    let answered = 0;
    // The owner's call is the slow one whoever calls first: keyed on the call's number, a timer
    // 20 ms late (a loaded machine) left `a` no time to call at all, and `b` got the 190 ms call.
    const options = (owner: "a" | "b"): ExchangeOptions => ({
      ttlMs: 5_000,
      timeoutMs: 200,
      callOrigin: (signal) => {
        const call = ++calls;
        const ms = owner === "a" ? 190 : 0;
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            answered++;
            resolve(answer(200, `token-${call}`));
          }, ms);
          signal.addEventListener("abort", () => {
            clearTimeout(timer);
            reject(new OriginFailure(504, "upstream_timeout", "timed out"));
          });
        });
      },
    });
    const first = Promise.allSettled([a.run(KEY, options("a"))]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const [, [other]] = await Promise.all([first, Promise.allSettled([b.run(KEY, options("b"))])]);
    assert.equal(answered, 1, `the origin answered ${answered} times for one key`);
    assert.equal(other.status, "fulfilled");
  });
});

Deno.test("SingleFlight.run() code replay: an answer of exactly the 512 KiB cache cap is shared with other isolates", async () => {
  await withKv(async (kv) => {
    const origin = countingOrigin(() => answer(200, "a".repeat(MAX_CACHED_BODY_BYTES)));
    const first = await new SingleFlight(kv).run(KEY, origin.options());
    const second = await new SingleFlight(kv).run(KEY, origin.options());
    assert.deepEqual([first.cache, second.cache], ["miss", "hit"]);
    assert.equal(second.answer.body.byteLength, MAX_CACHED_BODY_BYTES);
    assert.equal(origin.calls, 1);
  });
});

Deno.test("SingleFlight.run() double spend: a chunked answer stored again after its TTL is read whole, not mixed with the last one's chunks", async () => {
  await withKv(async (kv) => {
    const clock = { ms: 1_000_000 };
    const flights = () => new SingleFlight(kv, { now: () => clock.ms, leaseMarginMs: 100 });
    let n = 0;
    // 200 KiB: stored in chunks, not in the head.
    const origin = countingOrigin(() => answer(200, `${++n}`.padEnd(200 * 1024, "x")));
    const first = await flights().run(KEY, origin.options({ ttlMs: 1_000 }));
    // Past TTL and margin by the clocks; the old chunks stay readable (expireIn is real time).
    clock.ms += 1_100;
    const second = await flights().run(KEY, origin.options({ ttlMs: 1_000 }));
    const third = await flights().run(KEY, origin.options({ ttlMs: 1_000 }));
    assert.deepEqual([first.cache, second.cache, third.cache], ["miss", "miss", "hit"]);
    assert.equal(text(third.answer)[0], "2");
    assert.equal(origin.calls, 2, "the origin was called again while a live answer was stored");
  });
});

Deno.test("SingleFlight.run() a caller sharing a call with the largest timeout_ms the rules file takes waits for it, not an overflowed timer", async () => {
  await withKv(async (kv) => {
    const flights = new SingleFlight(kv);
    const origin = countingOrigin(() => answer(200, "t"), 50);
    // The schema's maximum: a timer past 2^31 - 1 ms fires at once.
    const options = origin.options({ timeoutMs: 2 ** 31 - 1 });
    const results = await Promise.allSettled([
      flights.run(KEY, options),
      flights.run(KEY, options),
    ]);
    assert.deepEqual(
      results.map((r) => r.status === "fulfilled" ? r.value.cache : (r.reason as HttpError).code),
      ["miss", "coalesced"],
    );
    assert.equal(origin.calls, 1);
  });
});

Deno.test("SingleFlight.run() storage leak: every lease, answer, chunk and not-shared marker it writes carries an expireIn", async () => {
  // Recorded, not waited for: an in-memory store still read a key 2 s after its expireIn: 50.
  await withKv(async (kv) => {
    const sets: Array<{ key: Deno.KvKey; expireIn?: number }> = [];
    const recording = withAtomic(kv, (op) => {
      const set = op.set.bind(op);
      op.set = (key, value, options) => {
        sets.push({ key, expireIn: options?.expireIn });
        return set(key, value, options);
      };
    });
    const flights = new SingleFlight(recording, { leaseMarginMs: 100 });
    for (const [i, size] of [[1, 10], [2, 100 * 1024], [3, MAX_CACHED_BODY_BYTES + 1]]) {
      const origin = countingOrigin(() => answer(200, "x".repeat(size)), 0);
      await flights.run(String(i).repeat(64), origin.options({ ttlMs: 1_000 }));
    }
    assert.deepEqual([...new Set(sets.map((s) => s.key[1]))].sort(), ["chunk", "lease", "result"]);
    const lasting = sets.filter((s) => !(typeof s.expireIn === "number" && s.expireIn > 0));
    assert.deepEqual(lasting.map((s) => s.key.slice(0, 2)), [], "written to stay forever");
  });
});

Deno.test("the lease entry lives until others may take it over (deadline + margin), not only to its deadline", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const leases: Array<number | undefined> = [];
    const recording = new Proxy(kv, {
      get(target, prop) {
        if (prop === "atomic") {
          return () => {
            const op = target.atomic();
            const set = op.set.bind(op);
            op.set = (key, value, options) => {
              if (key[1] === "lease") leases.push(options?.expireIn);
              return set(key, value, options);
            };
            return op;
          };
        }
        const value = Reflect.get(target, prop);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const margin = 100;
    const timeoutMs = 1_000;
    const flights = new SingleFlight(recording, { leaseMarginMs: margin });
    await flights.run("a".repeat(64), {
      ttlMs: 1_000,
      timeoutMs,
      callOrigin: () =>
        Promise.resolve({ status: 200, statusText: "", headers: [], body: new Uint8Array() }),
    });
    assert.equal(leases.length, 1);
    // Others leave the lease alone until deadline (now + timeout + margin) + margin: removed by
    // expiry before that, it hands the key over while its owner may still be saving the answer.
    assert.ok(leases[0]! >= timeoutMs + 2 * margin, `lease expireIn ${leases[0]}`);
  } finally {
    kv.close();
  }
});

Deno.test("SingleFlight.run() double spend: an answer with more than 16 KiB of headers is marked not shared, and not called for again", async () => {
  await withKv(async (kv) => {
    const big = "x".repeat(14 * 1024);
    // 42 KiB of headers beside a 30 KiB body: one KV value (64 KiB) could not hold both, and a
    // save that fails leaves the lease to expire and a second caller to call the origin again.
    const origin = countingOrigin(() => ({
      status: 200,
      statusText: "",
      headers: [["x-a", big], ["x-b", big], ["x-c", big]],
      body: new Uint8Array(30 * 1024),
    }));
    const flights = () => new SingleFlight(kv, { leaseMarginMs: 100 });
    assert.equal((await flights().run(KEY, origin.options({ timeoutMs: 300 }))).cache, "miss");
    await assert.rejects(flights().run(KEY, origin.options({ timeoutMs: 300 })), {
      code: "ocap_response_not_shared",
    });
    assert.equal(origin.calls, 1, "the origin was called again for an answer already given");
  });
});

Deno.test("SingleFlight.run() double spend: the not-shared mark of an answer too large to cache lasts the TTL and the margin", async () => {
  await withKv(async (kv) => {
    const expiries: Array<number | undefined> = [];
    const recording = withAtomic(kv, (op) => {
      const set = op.set.bind(op);
      op.set = (key, value, options) => {
        if (key[1] === "result") expiries.push(options?.expireIn);
        return set(key, value, options);
      };
    });
    const origin = countingOrigin(() => ({
      status: 200,
      statusText: "",
      headers: [],
      body: new Uint8Array(MAX_CACHED_BODY_BYTES + 1),
    }));
    assert.equal((await new SingleFlight(recording).run(KEY, origin.options())).cache, "miss");
    assert.deepEqual(expiries, [30_000 + LEASE_MARGIN_MS]);
  });
});

Deno.test("SingleFlight.run() tells the operator when the store refused an answer, and the caller still gets it", async () => {
  await withKv(async (kv) => {
    let commits = 0;
    const failing = withAtomic(kv, (op) => {
      const commit = op.commit.bind(op);
      // The first commit takes the lease; the second would save the answer.
      op.commit = () => ++commits === 2 ? Promise.reject(new Error("disk I/O error")) : commit();
    });
    const logged: string[] = [];
    const original = console.error;
    console.error = (line: string) => logged.push(line);
    try {
      const got = await new SingleFlight(failing).run(KEY, {
        ttlMs: 30_000,
        timeoutMs: 1_000,
        callOrigin: () => Promise.resolve(answer(200, "spent")),
      });
      assert.equal(got.cache, "miss");
      assert.equal(text(got.answer), "spent");
    } finally {
      console.error = original;
    }
    assert.deepEqual(logged.map((line) => JSON.parse(line)), [
      { msg: "ocap could not store an answer", error: "Error: disk I/O error" },
    ]);
  });
});
