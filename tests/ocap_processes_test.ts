/**
 * OCAP across isolates and processes: `deno serve --parallel` workers and separate `deno run`
 * processes share one SQLite KV file, and identical requests still reach the origin once.
 */
import assert from "node:assert/strict";
import { startUpstream } from "./_servers.ts";
import { tally, tokenRequest } from "./_ocap.ts";
import { PATIENT_RULES, startProcess, type VestibuleProcess } from "./_processes.ts";

/** A provider stand-in that counts calls and answers after `delayMs`. */
function slowProvider(delayMs: number) {
  return startUpstream(async () => {
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    return Response.json({ access_token: "shared" });
  });
}

async function withKvFile(fn: (kvPath: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ocap_kv_" });
  try {
    await fn(`${dir}/kv.sqlite3`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function fanIn(targets: string[], callers: number): Promise<Response[]> {
  return await Promise.all(
    Array.from({ length: callers }, (_, i) => fetch(tokenRequest(targets[i % targets.length]))),
  );
}

async function assertShared(responses: Response[]): Promise<void> {
  const bodies = await Promise.all(responses.map((r) => r.text()));
  assert.deepEqual(new Set(responses.map((r) => r.status)), new Set([200]));
  assert.deepEqual(new Set(bodies), new Set(['{"access_token":"shared"}']));
  const cache = tally(responses.map((r) => r.headers.get("ocap-cache")));
  assert.equal(cache.miss, 1);
  assert.equal((cache.coalesced ?? 0) + (cache.hit ?? 0), responses.length - 1);
}

Deno.test("OCAP makes one origin call for 100 callers across deno serve --parallel workers", async () => {
  const provider = slowProvider(500);
  await withKvFile(async (kvPath) => {
    const serve = await startProcess("serve", {
      providerUrl: provider.url,
      kvPath,
      jobs: 4,
      rules: PATIENT_RULES,
    });
    try {
      const responses = await fanIn([serve.url], 100);
      await assertShared(responses);
      assert.equal(provider.received.length, 1);
    } finally {
      await serve.stop();
      await provider.close();
    }
  });
});

Deno.test("OCAP makes one origin call for callers split between two processes", async () => {
  const provider = slowProvider(500);
  await withKvFile(async (kvPath) => {
    const processes: VestibuleProcess[] = [];
    try {
      const options = { providerUrl: provider.url, kvPath, rules: PATIENT_RULES };
      processes.push(await startProcess("run", options));
      processes.push(await startProcess("run", options));
      const responses = await fanIn(processes.map((p) => p.url), 100);
      await assertShared(responses);
      assert.equal(provider.received.length, 1);
    } finally {
      await Promise.all(processes.map((p) => p.stop()));
      await provider.close();
    }
  });
});

Deno.test("OCAP lets a waiter take over when the owner process is killed mid-request", async () => {
  let releaseFirst!: () => void;
  const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
  const provider = startUpstream(async (_req, received) => {
    if (received === provider.received[0]) await firstHeld; // The owner's call never completes.
    return Response.json({ access_token: "after takeover" });
  });
  await withKvFile(async (kvPath) => {
    const owner = await startProcess("run", { providerUrl: provider.url, kvPath });
    const waiter = await startProcess("run", { providerUrl: provider.url, kvPath });
    try {
      const lost = fetch(tokenRequest(owner.url)).then(
        (r) => r.body?.cancel(),
        () => "connection lost",
      );
      while (provider.received.length === 0) await new Promise((r) => setTimeout(r, 10));
      const started = performance.now();
      const waiting = fetch(tokenRequest(waiter.url));
      await new Promise((resolve) => setTimeout(resolve, 200));
      await owner.stop("SIGKILL");
      const response = await waiting;
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("ocap-cache"), "miss");
      assert.deepEqual(await response.json(), { access_token: "after takeover" });
      assert.equal(provider.received.length, 2, "exactly one more origin call, by the waiter");
      // The fixture's timeout_ms is 1000; the lease lasts 2 s longer and is left alone 2 s past
      // its deadline (clocks may differ), so not much sooner than 5 s after the owner's start.
      assert.ok(performance.now() - started > 3_500);
      assert.equal(await lost, "connection lost");
    } finally {
      releaseFirst();
      await owner.stop("SIGKILL");
      await waiter.stop();
      await provider.close();
    }
  });
});

Deno.test("OCAP store hang: a KV Connect store that fails every call is 503 within the KV limit, not a request that never ends", async () => {
  // A self-hosted denokv reached over KV Connect: it opens, then fails every data call, which
  // Deno's client retries forever. In a child process, so those retries end with it.
  let base = "";
  const store = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (new URL(req.url).pathname !== "/") return new Response("down", { status: 500 });
    return Response.json({
      version: 2,
      databaseId: "11111111-1111-1111-1111-111111111111",
      endpoints: [{ url: `${base}/v2`, consistency: "strong" }],
      token: "t",
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    });
  });
  base = `http://127.0.0.1:${store.addr.port}`;
  const provider = slowProvider(0);
  const edge = await startProcess("run", {
    providerUrl: provider.url,
    kvPath: base,
    env: { DENO_KV_ACCESS_TOKEN: "test-token" },
    quiet: true,
  });
  try {
    const started = performance.now();
    const res = await fetch(tokenRequest(edge.url, { headers: { accept: "application/json" } }), {
      signal: AbortSignal.timeout(6_000),
    });
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error, "ocap_store_unavailable");
    assert.ok(performance.now() - started < 4_000);
    assert.equal(provider.received.length, 0);
  } finally {
    await edge.stop("SIGKILL");
    await Promise.all([provider.close(), store.shutdown()]);
  }
});
