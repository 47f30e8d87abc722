/**
 * What `deno run main.ts` (`deno task start`, Deno Deploy) itself sets up from its environment and
 * rules, beyond what `createApp` does: driven over HTTP against the real process.
 */
import assert from "node:assert/strict";
import {
  exitedOf,
  freePort,
  LOOPBACK_ONLY,
  startUpstream,
  type TestServer,
  untilHealthy,
} from "./_servers.ts";

/**
 * Runs `deno run main.ts` with `rules` and `env` while `fn` runs, then stops it; with every
 * permission unless `permissions` names the ones to give. Without `rules`, main.ts finds its own
 * (no `VESTIBULE_RULES`), and `env` is all it gets besides what Deno needs to run.
 */
async function withMain(
  rules: Record<string, unknown> | undefined,
  env: Record<string, string>,
  fn: (base: string, port: number) => Promise<void>,
  permissions = ["--allow-all"],
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "main_entry_test_" });
  const path = `${dir}/rules.json`;
  await Deno.writeTextFile(path, JSON.stringify(rules));
  const port = freePort();
  const own = ["HOME", "DENO_DIR", "PATH"].flatMap((name) => {
    const value = Deno.env.get(name);
    return value === undefined ? [] : [[name, value]];
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, "main.ts"],
    cwd: new URL("../", import.meta.url),
    clearEnv: rules === undefined,
    env: {
      ...LOOPBACK_ONLY,
      PORT: String(port),
      NO_COLOR: "1",
      ...(rules === undefined ? Object.fromEntries(own) : { VESTIBULE_RULES: path }),
      ...env,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Read as it comes, so a start-up that failed says why (a permission it lacked, say).
  const stderr = new Response(child.stderr).text();
  try {
    const base = `http://127.0.0.1:${port}`;
    await untilHealthy(base, exitedOf(child)).catch(async (error) => {
      throw new Error(`main.ts did not start: ${await Promise.race([stderr, "(still running)"])}`, {
        cause: error,
      });
    });
    await fn(base, port);
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

// (On every address by default, as a published port needs: listenHost()'s default, tested in
// lib/listen_port_test.ts; tests keep it to loopback with LOOPBACK_ONLY.)
Deno.test("main.ts without VESTIBULE_RULES serves the shipped ./rules.json", async (t) => {
  const up = startUpstream(() => new Response("from the region"));
  // What the shipped rules refer to; nothing else of the shell running the tests.
  const env = {
    AU_ORIGIN: up.url,
    AU_SECRET: "test-au-secret",
    US_ORIGIN: up.url,
    WEBSITE_ORIGIN: up.url,
  };
  try {
    await withMain(undefined, env, async (base) => {
      await t.step("the shipped rules route /dashboard to the default region", async () => {
        const response = await fetch(`${base}/dashboard`);
        assert.equal(await response.text(), "from the region");
        assert.deepEqual(up.received.map((r) => r.path), ["/dashboard"]);
      });
    });
  } finally {
    await up.close();
  }
});
