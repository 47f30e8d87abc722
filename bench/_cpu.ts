/**
 * @module CPU time of a benchmarked process. On this 2-core VM req/s moves by up to 2x from one
 * second to the next; the CPU time a process spends per request moves far less, and says what a
 * req/s ratio is made of.
 */

/** `sysconf(_SC_CLK_TCK)`, 100 on Linux: the unit of /proc/<pid>/stat times. */
export const CLOCK_TICKS_PER_SECOND = 100;

/** utime + stime of process `pid` from /proc/<pid>/stat (Linux), in clock ticks. */
export function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name, in parentheses, may hold spaces: fields are counted after its `)`.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15.
}

/** Microseconds of CPU per request, from ticks spent over `requests`. */
export function cpuMicrosPerRequest(ticks: number, requests: number): number {
  return (ticks * 1e6) / CLOCK_TICKS_PER_SECOND / requests;
}
