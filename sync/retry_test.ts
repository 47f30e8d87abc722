import assert from "node:assert/strict";
import { attemptsOf, isTransient, withRetry } from "./retry.ts";

const failure = (code: string) => Object.assign(new Error(`failed with ${code}`), { code });

Deno.test("isTransient() accepts serialization, deadlock and lost connections only", () => {
  for (const code of ["40001", "40P01", "57P01", "08006", "CONNECTION_CLOSED", "ECONNRESET"]) {
    assert.equal(isTransient(failure(code)), true, code);
  }
  for (const code of ["23505", "23514", "42P01", "CONNECTION_ENDED"]) {
    assert.equal(isTransient(failure(code)), false, code);
  }
  assert.equal(isTransient(new Error("no code")), false);
});

Deno.test("withRetry() retries transient failures with growing delays, then succeeds", async () => {
  const delays: number[] = [];
  let calls = 0;
  const { value, attempts } = await withRetry(() => {
    calls++;
    if (calls < 3) return Promise.reject(failure("40001"));
    return Promise.resolve("done");
  }, { baseDelayMs: 100, sleep: (ms) => (delays.push(ms), Promise.resolve()) });
  assert.equal(value, "done");
  assert.equal(attempts, 3);
  assert.equal(delays.length, 2);
  assert.ok(delays[0] >= 50 && delays[0] < 150, `first delay ${delays[0]}`);
  assert.ok(delays[1] >= 100 && delays[1] < 300, `second delay ${delays[1]}`);
});

Deno.test("withRetry() gives up after the last attempt and passes other errors at once", async () => {
  let calls = 0;
  await assert.rejects(
    withRetry(() => (calls++, Promise.reject(failure("40P01"))), {
      attempts: 3,
      sleep: () => Promise.resolve(),
    }),
    /failed with 40P01/,
  );
  assert.equal(calls, 3);
  calls = 0;
  await assert.rejects(
    withRetry(() => (calls++, Promise.reject(failure("23505"))), {
      sleep: () => Promise.resolve(),
    }),
    /failed with 23505/,
  );
  assert.equal(calls, 1);
});

Deno.test("withRetry() makes 4 tries in all by default, as the README promises", async () => {
  let calls = 0;
  await assert.rejects(
    withRetry(() => (calls++, Promise.reject(failure("40001"))), {
      sleep: () => Promise.resolve(),
    }),
    /failed with 40001/,
  );
  assert.equal(calls, 4);
});

Deno.test("isTransient() retries a server starting up or restarting and every lost or refused connection", () => {
  for (
    const code of [
      "57P02", // crash_shutdown
      "57P03", // cannot_connect_now: the server is starting up or in recovery
      "08000",
      "08001",
      "08003",
      "08004",
      "CONNECTION_DESTROYED",
      "CONNECT_TIMEOUT",
      "ECONNREFUSED",
      "EPIPE",
    ]
  ) {
    assert.equal(isTransient(failure(code)), true, code);
  }
});

Deno.test("withRetry() backs off about 250 ms before the second try by default, with jitter", async () => {
  const delays: number[] = [];
  for (let i = 0; i < 20; i++) {
    let calls = 0;
    await withRetry(() => (calls++ === 0 ? Promise.reject(failure("40P01")) : Promise.resolve(1)), {
      sleep: (ms) => (delays.push(ms), Promise.resolve()),
    });
  }
  assert.equal(delays.length, 20);
  for (const ms of delays) assert.ok(ms >= 125 && ms < 375, `first delay ${ms}`);
  assert.ok(new Set(delays).size > 1, `every delay was ${delays[0]} ms: no jitter`);
});

Deno.test("attemptsOf() tells the tries withRetry() made before it gave up (the report's attempts)", async () => {
  const serialization = failure("40001");
  await assert.rejects(
    withRetry(() => Promise.reject(serialization), { attempts: 3, sleep: () => Promise.resolve() }),
    /failed with 40001/,
  );
  assert.equal(attemptsOf(serialization), 3);
  const violation = failure("23505");
  await assert.rejects(withRetry(() => Promise.reject(violation)), /failed with 23505/);
  assert.equal(attemptsOf(violation), 1);
  assert.equal(attemptsOf(failure("40001")), 0);
});

Deno.test("withRetry() retries nothing once its signal fired, and a stop ends the backoff at once", async (t) => {
  await t.step("fired before the failure: the failure is thrown, one try", async () => {
    const controller = new AbortController();
    controller.abort();
    let calls = 0;
    let retries = 0;
    const error = failure("08006");
    await assert.rejects(
      withRetry(() => (calls++, Promise.reject(error)), {
        signal: controller.signal,
        // Its "transient failure, retrying" line would promise a retry that never comes.
        onRetry: () => retries++,
      }),
      (thrown) => thrown === error,
    );
    assert.deepEqual([calls, retries], [1, 0]);
    assert.equal(attemptsOf(error), 1);
  });
  await t.step("fired during a 60 s backoff: thrown at once, no second try", async () => {
    const controller = new AbortController();
    let calls = 0;
    const started = performance.now();
    const error = failure("CONNECT_TIMEOUT");
    const tried = withRetry(() => (calls++, Promise.reject(error)), {
      baseDelayMs: 60_000,
      signal: controller.signal,
      onRetry: () => setTimeout(() => controller.abort(), 10),
    });
    await assert.rejects(tried, (thrown) => thrown === error);
    assert.equal(calls, 1);
    // The default sleep's timer is cleared, or the test's sanitizer reports it.
    assert.ok(performance.now() - started < 5_000, "the backoff ran on");
  });
});
