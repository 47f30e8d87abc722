/**
 * @module `deno task` runs every task in the directory of `deno.json`, and says where the shell
 * was in `INIT_CWD`. The CLIs (check-rules, explain, sync) read the files an operator names from
 * there, as any command does: from `deploy/staging/`, `deno task check-rules rules.json` checked
 * the repository's own `rules.json` and reported it OK.
 */
import { fileURLToPath } from "node:url";

/** The directory of vestibule's deno.json, where `deno task` starts its tasks. */
const TASKS_DIRECTORY = fileURLToPath(new URL("../", import.meta.url));

/**
 * Makes the shell's directory the working directory, when `deno task` started this CLI in the
 * repository's from another. Only then: every process a task starts inherits `INIT_CWD`, also one
 * started after the task's own `cd` (`cd staging && … check_rules.ts rules.json`), which must read
 * from where it was sent.
 */
export function enterShellDirectory(): void {
  const shell = Deno.env.get("INIT_CWD");
  if (shell && sameDirectory(Deno.cwd(), TASKS_DIRECTORY)) Deno.chdir(shell);
}

function sameDirectory(a: string, b: string): boolean {
  try {
    return Deno.realPathSync(a) === Deno.realPathSync(b);
  } catch {
    return false;
  }
}
