/**
 * @module Two servers loaded at the same time, on the same CPU, and their CPU time per request
 * compared round by round. Run one after the other, even right next to each other, two runs of the
 * same server on this VM differed by up to 2x; loaded at once they share every slow or fast second.
 * Two instances of one server read within a few percent of 1 in the median of seven rounds, though
 * single rounds reached 1.2–1.6 (hence the medians). A server's own CPU per request also moves
 * with what shares its CPU (a pass-through's read 81 µs beside another and 132 µs beside
 * vestibule): the ratio is what compares. With CPU the limit, requests/s fall by about its inverse.
 */
import { median } from "./_pairs.ts";

/** A server under load: where to send requests, and its process's CPU time so far. */
export interface LoadedServer {
  url: string;
  /** utime + stime of its process, in clock ticks (`cpuTicks` in `_cpu.ts`). */
  cpuTicks(): number;
}

/** One run of the load generator against `url`; resolves with the requests it completed. */
export type LoadRun = (url: string) => Promise<number>;

/** Per round, each server's CPU µs per request, and `b`'s over `a`'s. */
export interface SideBySide {
  aUs: number[];
  bUs: number[];
  ratios: number[];
}

/** Loads `a` and `b` at once with `run`, `rounds` times. */
export async function sideBySide(
  a: LoadedServer,
  b: LoadedServer,
  rounds: number,
  run: LoadRun,
  microsPerRequest: (ticks: number, requests: number) => number,
): Promise<SideBySide> {
  const result: SideBySide = { aUs: [], bUs: [], ratios: [] };
  for (let round = 0; round < rounds; round++) {
    const before = [a.cpuTicks(), b.cpuTicks()];
    const [aRequests, bRequests] = await Promise.all([run(a.url), run(b.url)]);
    const aUs = microsPerRequest(a.cpuTicks() - before[0], aRequests);
    const bUs = microsPerRequest(b.cpuTicks() - before[1], bRequests);
    result.aUs.push(aUs);
    result.bUs.push(bUs);
    result.ratios.push(bUs / aUs);
  }
  return result;
}

/** `median (min–max)` of the ratios, to three places. */
export function ratioSummary({ ratios }: SideBySide): string {
  const f = (n: number) => n.toFixed(3);
  return `${f(median(ratios))} (${f(Math.min(...ratios))}–${f(Math.max(...ratios))})`;
}
