/**
 * @module The CPU time a piece of work takes, for tests that compare the cost of two inputs.
 * Wall time counted every other process on the machine (a loaded CI host, a helper running its
 * own suite) and made such comparisons flaky; the process's own CPU time does not.
 */
import process from "node:process";

/**
 * Milliseconds of this process's CPU time (user + system, all its threads) for the cheapest of
 * `runs` runs of `work`: the least is the one least disturbed by a garbage collection.
 */
export async function leastCpuMs(work: () => Promise<unknown>, runs = 3): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < runs; i++) {
    const before = process.cpuUsage();
    await work();
    const { user, system } = process.cpuUsage(before);
    least = Math.min(least, (user + system) / 1000);
  }
  return least;
}
