import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

Deno.test("empty secret: a rule gated on ^${INTERNAL_KEY}$ does not open when INTERNAL_KEY is set but empty", async () => {
  const internal = startUpstream();
  const app = startUpstream();
  const rules = {
    regions: { us: { origin: app.url } },
    upstreams: { internal: { origin: internal.url } },
    default_region: "us",
    rules: [
      {
        name: "internal-api",
        type: "global",
        match: { path: "^/internal/", headers: { "X-Internal-Key": "^${INTERNAL_KEY}$" } },
        upstream: "internal",
      },
      { name: "app", type: "regional" },
    ],
  };
  let edge: ReturnType<typeof startVestibule> | undefined;
  let startError: unknown;
  try {
    // As docker compose passes `INTERNAL_KEY: ${INTERNAL_KEY}` when the host lacks it.
    edge = startVestibule(rules, { env: { INTERNAL_KEY: "" } });
  } catch (error) {
    startError = error;
  }
  try {
    if (edge) {
      const res = await fetch(`${edge.url}/internal/users`, { headers: { "X-Internal-Key": "" } });
      await res.body?.cancel();
      assert.equal(
        internal.received.length,
        0,
        `an empty X-Internal-Key reached the internal upstream (status ${res.status})`,
      );
    }
    assert.ok(startError instanceof Error, "start-up accepted an empty ${INTERNAL_KEY}");
    assert.match(startError.message, /INTERNAL_KEY/);
  } finally {
    await edge?.close();
    await internal.close();
    await app.close();
  }
});
