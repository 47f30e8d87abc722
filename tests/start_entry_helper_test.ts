/**
 * The start helpers the stop tests stand on: a vestibule that cannot start is a failure that says
 * why at once, and a server that is not vestibule never passes for it.
 */
import assert from "node:assert/strict";
import { ENTRIES, startEntry } from "./_shutdown.ts";
import {
  answersHealth,
  DEAD_ORIGIN,
  startUpstream,
  startVestibule,
  twoRegions,
} from "./_servers.ts";

for (const entry of ENTRIES) {
  Deno.test(`startEntry(${entry}): a vestibule that cannot start fails the test with its own line, not a 10 s wait`, async () => {
    const start = startEntry(entry, DEAD_ORIGIN, {
      env: { VESTIBULE_RULES: "/nonexistent/rules.json" },
    });
    await assert.rejects(start, (error: Error) => {
      // Not `fetch failed` after polling a port nothing would ever listen on.
      assert.match(error.message, /^vestibule exited before it answered/, error.message);
      assert.match(error.message, /Cannot read rules file "\/nonexistent\/rules\.json"/);
      return true;
    });
  });
}

Deno.test("answersHealth(): a server that answers 200 on the port is not taken for vestibule", async () => {
  const other = startUpstream(() => new Response("ok"));
  const edge = startVestibule(twoRegions(DEAD_ORIGIN, DEAD_ORIGIN));
  try {
    assert.equal(await answersHealth(other.url), false);
    assert.equal(await answersHealth(edge.url), true);
  } finally {
    await Promise.all([other.close(), edge.close()]);
  }
});

Deno.test("DEAD_ORIGIN: nothing listens on it, so a dead region stays dead in every test that uses it", async () => {
  // Were something on this machine to listen there, the dead-upstream tests would fail as routing
  // bugs (a 200 from a region meant to be down); this says what is wrong instead.
  const { hostname, port } = new URL(DEAD_ORIGIN);
  await assert.rejects(
    Deno.connect({ hostname, port: Number(port) }),
    (error: Error) => error instanceof Deno.errors.ConnectionRefused,
    `something listens on ${DEAD_ORIGIN}, which the tests use as an upstream that is down`,
  );
});
