import assert from "node:assert/strict";
import { HttpError } from "../http_error.ts";
import { withKvRetry } from "./kv_retry.ts";
import { LEASE_MARGIN_MS } from "./single_flight.ts";

Deno.test("withKvRetry() retries a store that reports it is locked", async () => {
  let attempts = 0;
  const result = await withKvRetry(() => {
    attempts++;
    if (attempts < 3) return Promise.reject(new TypeError("database is locked"));
    return Promise.resolve("committed");
  });
  assert.equal(result, "committed");
  assert.equal(attempts, 3);
});

Deno.test("withKvRetry() gives up on a locked store after bounded attempts with 503", async () => {
  let attempts = 0;
  await assert.rejects(
    withKvRetry(() => {
      attempts++;
      return Promise.reject(new TypeError("database is locked"));
    }),
    (error: unknown) =>
      error instanceof HttpError && error.status === 503 &&
      error.code === "ocap_store_unavailable" && error.cause instanceof TypeError,
  );
  assert.equal(attempts, 8);
});

Deno.test("withKvRetry() does not retry other store failures", async () => {
  let attempts = 0;
  await assert.rejects(
    withKvRetry(() => {
      attempts++;
      return Promise.reject(new Deno.errors.BadResource("Bad resource ID"));
    }),
    (error: unknown) => error instanceof HttpError && error.code === "ocap_store_unavailable",
  );
  assert.equal(attempts, 1);
});

Deno.test("withKvRetry() store hang: a call with no answer within the limit is 503, not a wait forever", async () => {
  const started = performance.now();
  await assert.rejects(
    withKvRetry(() => new Promise(() => {}), 50),
    (error: unknown) =>
      error instanceof HttpError && error.code === "ocap_store_unavailable" &&
      /did not answer within 50 ms/.test(String((error.cause as Error).message)),
  );
  const took = performance.now() - started;
  assert.ok(took >= 45 && took < 500, `${took} ms`);
});

Deno.test("withKvRetry() stops retrying a busy store at the limit", async () => {
  let attempts = 0;
  let last: Promise<never> | undefined;
  const started = performance.now();
  await assert.rejects(
    withKvRetry(() => {
      attempts++;
      last = new Promise((_, reject) =>
        setTimeout(() => reject(new TypeError("database is locked")), 30)
      );
      return last;
    }, 60),
    (error: unknown) => error instanceof HttpError && error.code === "ocap_store_unavailable",
  );
  assert.ok(attempts < 8, `${attempts} attempts`);
  assert.ok(performance.now() - started < 500);
  await last?.catch(() => {}); // the store's own answer, which came too late
});

Deno.test("withKvRetry() 503 inflation: a store that reports it is busy (SQLITE_BUSY) is retried like a locked one", async (t) => {
  for (const message of ["database is busy", "Error code 5: SQLITE_BUSY"]) {
    await t.step(message, async () => {
      let attempts = 0;
      const result = await withKvRetry(() => {
        attempts++;
        if (attempts < 3) return Promise.reject(new TypeError(message));
        return Promise.resolve("committed");
      });
      assert.equal(result, "committed");
      assert.equal(attempts, 3);
    });
  }
});

Deno.test("a store call that never answers is 503 ocap_store_unavailable within the lease margin (2 s), by default", async () => {
  const started = performance.now();
  let never: ReturnType<typeof setTimeout> | undefined;
  const hang = () =>
    new Promise<never>(() => {
      never = setTimeout(() => {}, 30_000);
    });
  const error = await withKvRetry(hang).then(() => undefined, (e) => e);
  clearTimeout(never);
  const took = performance.now() - started;
  assert.equal(error?.status, 503);
  assert.equal(error?.code, "ocap_store_unavailable");
  assert.ok(took <= LEASE_MARGIN_MS + 500, `took ${Math.round(took)} ms`);
});

/** The pauses withKvRetry() asks for on a store locked at every attempt, `Math.random` as given. */
async function pausesAsked(random: number): Promise<number[]> {
  const asked: number[] = [];
  const { setTimeout: realSetTimeout } = globalThis;
  const realRandom = Math.random;
  globalThis.setTimeout = ((fn: () => void, ms: number) => {
    asked.push(ms);
    return realSetTimeout(fn, ms < 1_000 ? 0 : ms); // the pauses at once; the call's limit as is
  }) as unknown as typeof setTimeout;
  Math.random = () => random;
  try {
    await assert.rejects(withKvRetry(() => Promise.reject(new TypeError("database is locked"))));
  } finally {
    globalThis.setTimeout = realSetTimeout;
    Math.random = realRandom;
  }
  // The pauses between attempts, not the call's 2 s limit.
  return asked.filter((ms) => ms < 1_000);
}

Deno.test("withKvRetry() backoff: jittered, so processes that collided retry apart, and never over 80 ms", async () => {
  const low = await pausesAsked(0);
  const high = await pausesAsked(0.999);
  assert.deepEqual(low, [2.5, 5, 10, 20, 40, 40, 40]);
  assert.ok(high.every((ms, i) => ms > low[i] * 1.9 && ms <= 80), `${high}`);
});
