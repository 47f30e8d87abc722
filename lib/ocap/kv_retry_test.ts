import assert from "node:assert/strict";
import { HttpError } from "../http_error.ts";
import { withKvRetry } from "./kv_retry.ts";

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
