/**
 * @module `deno task` runs every task in the directory of `deno.json`, and says where the shell
 * was in `INIT_CWD`. The CLIs (check-rules, explain, sync) read the files an operator names from
 * there, as any command does: from `deploy/staging/`, `deno task check-rules rules.json` checked
 * the repository's own `rules.json` and reported it OK.
 */

/** Makes the shell's directory the working directory, when run by `deno task` from another. */
export function enterShellDirectory(): void {
  const shell = Deno.env.get("INIT_CWD");
  if (shell) Deno.chdir(shell);
}
