import assert from "node:assert/strict";
import { median, pairRatios, runInPairs } from "./_pairs.ts";

Deno.test("runInPairs() runs each target next to the baseline, order alternating", async () => {
  const order: string[] = [];
  let clock = 0;
  const results = await runInPairs("b", ["a", "b", "c"], 2, (target) => {
    order.push(target);
    return Promise.resolve({ target, at: clock++ });
  });
  assert.deepEqual(order, ["b", "a", "b", "c", "a", "b", "c", "b"]);
  const a = results.get("a")!;
  assert.deepEqual(a.runs.map((r) => r.at), [1, 4]);
  assert.deepEqual(a.baselines.map((r) => r.at), [0, 5], "each baseline run is a's neighbour");
  assert.deepEqual(results.get("b")!.runs.map((r) => r.at), [0, 2, 5, 7]);
  assert.deepEqual(pairRatios(a, (r) => r.at + 1), [2 / 1, 5 / 6]);
  assert.deepEqual(pairRatios(results.get("b")!, (r) => r.at), [1]);
  assert.equal(median([3, 1, 2]), 2);
});
