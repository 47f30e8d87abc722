/**
 * The test helpers' process-group check: what the helpers rely on to fail a test whose command
 * (`deno task serve`, the dev stack) ended but left a process of its own running.
 */
import assert from "node:assert/strict";
import { killGroup, spawnInGroup } from "./_process_group.ts";

Deno.test("test processes: a child left running after its parent ended is found, and killed", async () => {
  const shell = spawnInGroup("sh", { args: ["-c", "sleep 60 & exit 0"], stdin: "null" });
  assert.equal((await shell.status).code, 0);
  assert.equal(killGroup(shell.pid), true, "the sleep was still running");
  // Killed: nothing of the group is left for a second look to find.
  for (let tries = 0; killGroup(shell.pid); tries++) {
    assert.ok(tries < 50, "the sleep survived SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
});

Deno.test("test processes: a command that ended with everything it started leaves nothing", async () => {
  const shell = spawnInGroup("sh", { args: ["-c", "sleep 0.1; exit 0"], stdin: "null" });
  await shell.status;
  assert.equal(killGroup(shell.pid), false);
});
