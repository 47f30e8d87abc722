/**
 * @module `deno task sync:demo`, the zero-setup tour of the sync: it must show a drifted copy
 * brought in line, then nothing left to do, exit 0, and leave nothing behind.
 */
import assert from "node:assert/strict";

/** The rows of each summary table the demo prints, as `[table, status, ins, upd, del, extra]`. */
function summaries(stdout: string): string[][][] {
  const found: string[][][] = [];
  for (const line of stdout.split("\n")) {
    if (line.startsWith("destination ")) found.push([]);
    else if (line.startsWith("au ")) found.at(-1)?.push(line.split(/ {2,}/).slice(1, 7));
  }
  return found;
}

Deno.test("sync:demo brings the drifted region in line, finds nothing left on the second run, and exits 0", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "sync_demo_test_" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-write",
        new URL("../sync/demo.ts", import.meta.url).pathname,
      ],
      env: { TMPDIR: tmp },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stdout + stderr);
    assert.deepEqual(summaries(stdout), [
      [ // dry run
        ["public.subject", "planned (dry run)", "20", "22", "1", "0"],
        ["public.curriculum", "planned (dry run)", "3", "3", "0", "1"],
      ],
      [ // sync
        ["public.subject", "applied", "20", "22", "1", "0"],
        ["public.curriculum", "applied", "3", "3", "0", "1"],
      ],
      [ // second sync: the local-only curriculum row stays, as delete_missing is off
        ["public.subject", "in_sync", "0", "0", "0", "0"],
        ["public.curriculum", "in_sync", "0", "0", "0", "1"],
      ],
    ]);
    // The demo's config (with both regions' URLs) is removed with its directory.
    assert.deepEqual(await Array.fromAsync(Deno.readDir(tmp)), []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
