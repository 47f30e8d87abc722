import assert from "node:assert/strict";
import fc from "fast-check";
import { chooseOutcome, type RegionResult } from "./broadcast_outcome.ts";

const REGIONS = ["au", "us", "eu", "jp"];

const resultFor = (
  region: string,
  success: fc.Arbitrary<boolean> = fc.boolean(),
  status: fc.Arbitrary<number> = fc.integer({ min: 100, max: 599 }),
) =>
  fc.oneof(
    fc.record({
      region: fc.constant(region),
      kind: fc.constant("response" as const),
      status,
      success,
      preferred: fc.boolean(),
      ms: fc.nat(1000),
    }),
    fc.record({
      region: fc.constant(region),
      kind: fc.constantFrom("timeout" as const, "unavailable" as const),
      ms: fc.nat(1000),
    }),
  );

const scenarioOf = (result: (region: string) => ReturnType<typeof resultFor>) =>
  fc.tuple(
    fc.subarray(REGIONS, { minLength: 1 }).chain((regions) =>
      fc.tuple(fc.constant(regions), fc.tuple(...regions.map(result)))
    ),
    fc.boolean(),
    fc.shuffledSubarray(REGIONS, { minLength: REGIONS.length }),
  );
const scenario = scenarioOf((region) => resultFor(region));
/**
 * No success anywhere, and statuses mostly from a few that tie or differ in class, so that the
 * cases that decide the ranking (a 5xx matching prefer_failure against a plain non-5xx, equal
 * ranks broken by preference order) come up in most runs rather than by chance.
 */
const failureScenario = scenarioOf((region) =>
  resultFor(
    region,
    fc.constant(false),
    fc.oneof(fc.constantFrom(200, 401, 500, 503), fc.integer({ min: 100, max: 599 })),
  )
);

Deno.test("chooseOutcome() never returns a failure or nothing when a success exists", () => {
  fc.assert(fc.property(scenario, ([[, results], allowMultiple, preference]) => {
    const successes = results.filter((r) => r.kind === "response" && r.success);
    const outcome = chooseOutcome(results as RegionResult[], preference, allowMultiple);
    if (successes.length === 1) {
      assert.deepEqual(outcome, { kind: "success", region: successes[0].region });
    } else if (successes.length > 1) {
      if (allowMultiple) {
        assert.equal(outcome.kind, "success");
        const first = preference.find((p) => successes.some((s) => s.region === p));
        assert.equal((outcome as { region: string }).region, first);
      } else {
        assert.equal(outcome.kind, "ambiguous");
      }
    }
  }));
});

Deno.test("chooseOutcome() ranks failures: non-5xx over 5xx, then prefer_failure, then preference order", () => {
  fc.assert(
    fc.property(failureScenario, ([[, results], allowMultiple, preference]) => {
      const responses = results.filter((r) => r.kind === "response");
      if (responses.some((r) => r.success)) return;
      const outcome = chooseOutcome(results as RegionResult[], preference, allowMultiple);
      if (responses.length === 0) {
        assert.equal(outcome.kind, "unavailable");
        assert.equal(
          (outcome as { allTimedOut: boolean }).allTimedOut,
          results.every((r) => r.kind === "timeout"),
        );
        return;
      }
      assert.equal(outcome.kind, "failure");
      const chosen = responses.find((r) => r.region === (outcome as { region: string }).region)!;
      const best5xx = responses.every((r) => r.status >= 500);
      assert.equal(chosen.status >= 500, best5xx, "a 5xx chosen while a non-5xx existed");
      for (const other of responses) {
        if ((other.status >= 500) !== (chosen.status >= 500)) continue;
        if (other.preferred && !chosen.preferred) {
          assert.fail("a prefer_failure match was passed over");
        }
        if (other.preferred === chosen.preferred) {
          assert.ok(preference.indexOf(chosen.region) <= preference.indexOf(other.region));
        }
      }
    }),
    { numRuns: 1000 },
  );
});

Deno.test("chooseOutcome() does not depend on the order results arrive in", () => {
  fc.assert(fc.property(scenario, fc.nat(), ([[, results], allowMultiple, preference], seed) => {
    const shuffled = [...results].sort((a, b) =>
      ((a.region.charCodeAt(0) * seed) % 7) - ((b.region.charCodeAt(0) * seed) % 7)
    );
    assert.deepEqual(
      chooseOutcome(shuffled as RegionResult[], preference, allowMultiple),
      chooseOutcome(results as RegionResult[], preference, allowMultiple),
    );
  }));
});
