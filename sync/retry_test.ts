import assert from "node:assert/strict";
import { isTransient, withRetry } from "./retry.ts";

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
