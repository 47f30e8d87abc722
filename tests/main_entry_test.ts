/**
 * What `deno run main.ts` (`deno task start`, Deno Deploy) itself sets up from its environment and
 * rules, beyond what `createApp` does: driven over HTTP against the real process.
 */
import assert from "node:assert/strict";
import { deadPort, startUpstream, type TestServer, untilHealthy } from "./_servers.ts";

/**
 * Runs `deno run main.ts` with `rules` and `env` while `fn` runs, then stops it; with every
 * permission unless `permissions` names the ones to give.
 */
async function withMain(
  rules: Record<string, unknown>,
  env: Record<string, string>,
  fn: (base: string) => Promise<void>,
  permissions = ["--allow-all"],
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "main_entry_test_" });
  const path = `${dir}/rules.json`;
  await Deno.writeTextFile(path, JSON.stringify(rules));
  const port = deadPort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, "main.ts"],
    cwd: new URL("../", import.meta.url),
    env: { PORT: String(port), VESTIBULE_RULES: path, NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Read as it comes, so a start-up that failed says why (a permission it lacked, say).
  const stderr = new Response(child.stderr).text();
  try {
    const base = `http://127.0.0.1:${port}`;
    await untilHealthy(base).catch(async (error) => {
      throw new Error(`main.ts did not start: ${await Promise.race([stderr, "(still running)"])}`, {
        cause: error,
      });
    });
    await fn(base);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
    await stderr;
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("main.ts on Deno Deploy (DENO_DEPLOYMENT_ID set) tells upstreams the client came over https, not http", async () => {
  const up = startUpstream();
  try {
    const rules = {
      regions: { us: { origin: up.url } },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    };
    // Deploy terminates TLS in front of the app: an upstream that builds links or sets Secure
    // cookies from X-Forwarded-Proto would send https visitors to http.
    await withMain(rules, { DENO_DEPLOYMENT_ID: "abc123" }, async (base) => {
      await (await fetch(`${base}/x`)).body?.cancel();
    });
    // Self-hosted, main.ts listens on plain HTTP.
    await withMain(rules, {}, async (base) => {
      await (await fetch(`${base}/y`)).body?.cancel();
    });
    assert.deepEqual(
      up.received.map((r) => `${r.path} ${r.headers.get("x-forwarded-proto")}`),
      ["/x https", "/y http"],
    );
  } finally {
    await up.close();
  }
});

Deno.test("main.ts on Deno Deploy's terms: serves with only net, env and read permissions (no file writes, subprocesses, FFI or system info)", async () => {
  // Deploy gives an app no file system to write and no subprocesses; a start-up that needed
  // either (a cache file, a worker spawned as a process) would work here and fail there.
  const up = startUpstream(() => new Response("from us"));
  try {
    const rules = {
      regions: { us: { origin: up.url } },
      default_region: "us",
      // The heaviest start-up: the country table read (and the rules checked, in a Worker when
      // the permissions allow one, else in the process).
      geo: { ip_lookup: true, countries: {} },
      rules: [{ name: "app", type: "regional" }],
    };
    await withMain(rules, { DENO_DEPLOYMENT_ID: "abc123" }, async (base) => {
      const res = await fetch(`${base}/dashboard`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "from us");
    }, ["--allow-net", "--allow-env", "--allow-read"]);
    assert.deepEqual(up.received.map((r) => r.path), ["/dashboard"]);
  } finally {
    await up.close();
  }
});

Deno.test("main.ts loads the IP country table when the rules set geo.ip_lookup: an Australian address reaches AU", async () => {
  const servers: TestServer[] = [];
  const region = (name: string) => {
    const server = startUpstream(() => new Response(name));
    servers.push(server);
    return { origin: server.url };
  };
  try {
    const rules = {
      regions: { au: region("au"), us: region("us") },
      default_region: "us",
      // One proxy in front (a load balancer): its X-Forwarded-For entry is the client's address.
      trusted_proxy_hops: 1,
      geo: { ip_lookup: true, countries: { AU: "au" } },
      rules: [{ name: "app", type: "regional" }],
    };
    await withMain(rules, {}, async (base) => {
      // 1.0.0.1: the table's first range, 1.0.0.0-1.0.0.255, is AU (lib/geo_ip_test.ts).
      const res = await fetch(`${base}/`, { headers: { "x-forwarded-for": "1.0.0.1" } });
      assert.equal(await res.text(), "au");
    });
  } finally {
    await Promise.all(servers.map((s) => s.close()));
  }
});
