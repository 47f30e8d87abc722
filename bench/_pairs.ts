/**
 * @module Loads targets in back-to-back pairs with a baseline. This VM's speed moves by up to 2x
 * from one second to the next, so only runs close in time compare fairly: every target runs right
 * next to the baseline, `rounds` times, with the order inside a pair alternating so that a drift
 * within a pair cancels over the rounds.
 */

/** Per target, its own runs and, at the same index, the baseline run it was paired with. */
export interface PairedRuns<T> {
  runs: T[];
  baselines: T[];
}

/** Runs `measure(baseline)` next to `measure(target)` for every other target, `rounds` times. */
export async function runInPairs<K, T>(
  baseline: K,
  targets: readonly K[],
  rounds: number,
  measure: (target: K) => Promise<T>,
): Promise<Map<K, PairedRuns<T>>> {
  const results = new Map<K, PairedRuns<T>>(
    targets.map((target) => [target, { runs: [], baselines: [] }]),
  );
  for (let round = 0; round < rounds; round++) {
    for (const target of targets) {
      if (target === baseline) continue;
      const baselineFirst = round % 2 === 0;
      const first = await measure(baselineFirst ? baseline : target);
      const second = await measure(baselineFirst ? target : baseline);
      const [base, run] = baselineFirst ? [first, second] : [second, first];
      results.get(target)!.runs.push(run);
      results.get(target)!.baselines.push(base);
      results.get(baseline)!.runs.push(base);
    }
  }
  return results;
}

/** The median of per-pair ratios `value(run) / value(baseline)`; 1 for the baseline itself. */
export function pairRatios<T>(paired: PairedRuns<T>, value: (run: T) => number): number[] {
  if (paired.baselines.length === 0) return [1];
  return paired.runs.map((run, i) => value(run) / value(paired.baselines[i]));
}

export function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[values.length >> 1];
}
