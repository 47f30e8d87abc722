/**
 * @module Test helper: child processes in a process group of their own, so a test can tell
 * whether anything it started is still running when it ends, and end it. `deno task` runs its
 * command as a child of its own: SIGKILL to the task (a start that timed out) left that child
 * listening, and holding the test run's stderr, after the test had failed.
 */

/**
 * Spawns `command` through `setsid`, which makes it the leader of a new process group (as a
 * terminal's foreground job is) with the same pid: signals for the group go to `-child.pid`.
 */
export function spawnInGroup(
  command: string,
  options: Deno.CommandOptions & { args: string[] },
): Deno.ChildProcess {
  return new Deno.Command("setsid", { ...options, args: [command, ...options.args] }).spawn();
}

/**
 * SIGKILLs every process still running in the group led by `leader` (whose leader may be gone
 * already). Returns whether there was one: after a stop that should have ended them all, a
 * survivor is a defect the caller reports.
 */
export function killGroup(leader: number): boolean {
  if (runningInGroup(leader).length === 0) return false;
  try {
    Deno.kill(-leader, "SIGKILL");
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return true;
}

/**
 * The pids of the group's processes that still run, from `/proc` (Linux). Not zombies: an
 * orphan that ended stays one until init reaps it, which this machine's init does not do at once,
 * and `kill(-group)` still succeeds on it.
 */
function runningInGroup(leader: number): number[] {
  const running: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue; // Ended while we looked.
    }
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    const [state, , group] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(group) === leader && state !== "Z") running.push(Number(entry.name));
  }
  return running;
}
