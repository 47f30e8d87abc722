/**
 * A stop that reaches vestibule twice within milliseconds is one stop, not an operator insisting.
 * `deno task` relays SIGINT/SIGTERM to its child, which has often got the same signal already:
 * Ctrl-C in a terminal signals the whole foreground process group, and so does systemd's default
 * `KillMode=control-group`. Taken as "a second Ctrl-C", the relayed copy cut the answers in flight
 * off (and their access lines), and the exit code still said 0.
 */
import assert from "node:assert/strict";
import {
  exitedOf,
  freePort,
  LOOPBACK_ONLY,
  oneRegion,
  startUpstream,
  untilHealthy,
} from "./_servers.ts";
import { assertEveryAnswerLogged, ENTRIES, gotAnswer, startEntry } from "./_shutdown.ts";

/** An upstream whose answer ("finished") takes 500 ms; `arrived` resolves per request. */
function slowUpstream() {
  let arrived = Promise.withResolvers<void>();
  const up = startUpstream(async () => {
    arrived.resolve();
    await new Promise((resolve) => setTimeout(resolve, 500));
    return new Response("finished");
  });
  return {
    up,
    /** Resolves once the next request has reached the upstream. */
    next() {
      arrived = Promise.withResolvers<void>();
      return arrived.promise;
    },
  };
}

for (const entry of ENTRIES) {
  Deno.test(`${entry}: a SIGTERM that arrives twice 20 ms apart, as deno task relays a group's stop, still lets the answer in flight finish`, async () => {
    const { up, next } = slowUpstream();
    const server = await startEntry(entry, up.url, { stdout: "piped" });
    try {
      const arrived = next();
      const answer = gotAnswer(`${server.base}/slow`);
      await arrived;
      server.child.kill("SIGTERM"); // from the process group (Ctrl-C, systemd)
      await new Promise((resolve) => setTimeout(resolve, 20));
      server.child.kill("SIGTERM"); // and again from `deno task`, which relays it
      assert.equal(await answer, true, "the client got the answer in flight");
      assert.equal(await server.endWithin(5_000), "exited with code 0");
      assertEveryAnswerLogged(await new Response(server.child.stdout).text(), new Set(["/slow"]));
    } finally {
      await server.close();
      await up.close();
    }
  });
}

Deno.test("deno task start: Ctrl-C or a stop sent to its process group lets the answer in flight finish", async () => {
  const { up, next } = slowUpstream();
  const dir = await Deno.makeTempDir({ prefix: "relayed_signal_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(rules, JSON.stringify(oneRegion(up.url)));
  const outcomes: string[] = [];
  try {
    // The relay races the group's own delivery: two copies arrive apart in some trials only.
    for (const signal of ["SIGINT", "SIGTERM", "SIGINT", "SIGTERM", "SIGINT", "SIGTERM"] as const) {
      const port = freePort();
      // `setsid` makes `deno task` a process-group leader, as a terminal's foreground job is.
      const child = new Deno.Command("setsid", {
        args: [Deno.execPath(), "task", "-q", "start"],
        cwd: new URL("../", import.meta.url),
        env: { ...LOOPBACK_ONLY, PORT: String(port), VESTIBULE_RULES: rules, NO_COLOR: "1" },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        const base = `http://127.0.0.1:${port}`;
        await untilHealthy(base, exitedOf(child));
        const arrived = next();
        const answer = gotAnswer(`${base}/slow`);
        await arrived;
        Deno.kill(-child.pid, signal);
        outcomes.push(`${signal}: ${(await answer) ? "answered" : "cut off"}`);
      } finally {
        try {
          Deno.kill(-child.pid, "SIGKILL");
        } catch { /* already gone */ }
        await child.status;
      }
    }
  } finally {
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(outcomes.filter((o) => o.endsWith("cut off")), [], outcomes.join(", "));
});
