import assert from "node:assert/strict";
import { ratioSummary, sideBySide } from "./_side_by_side.ts";

Deno.test("sideBySide() loads both at once and divides their CPU per request round by round", async () => {
  // Each server's ticks advance by its cost times the requests the load run reports.
  const server = (url: string, costPerRequest: number) => {
    let ticks = 0;
    return { url, cpuTicks: () => ticks, spend: (n: number) => ticks += n * costPerRequest };
  };
  const a = server("http://a", 2);
  const b = server("http://b", 3);
  const inFlight: string[] = [];
  let together = 0;
  const result = await sideBySide(a, b, 3, async (url) => {
    inFlight.push(url);
    await Promise.resolve();
    if (inFlight.length === 2) together++;
    const requests = url === a.url ? 100 : 50;
    (url === a.url ? a : b).spend(requests);
    await Promise.resolve();
    inFlight.splice(inFlight.indexOf(url), 1);
    return requests;
  }, (ticks, requests) => ticks / requests);
  assert.equal(together, 6, "in every round each load run saw the other in flight");
  assert.deepEqual(result.aUs, [2, 2, 2]);
  assert.deepEqual(result.bUs, [3, 3, 3]);
  assert.deepEqual(result.ratios, [1.5, 1.5, 1.5]);
  assert.equal(ratioSummary({ ...result, ratios: [1.2, 0.9, 1.05] }), "1.050 (0.900–1.200)");
});
