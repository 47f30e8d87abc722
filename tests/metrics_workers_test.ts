/**
 * Metrics under `deno serve --parallel`: each worker counts its own requests, and a scrape, which
 * reaches whichever worker accepts the connection, must still show the whole instance's.
 */
import assert from "node:assert/strict";
import { LOOPBACK_ONLY } from "./_servers.ts";
import { startProcess } from "./_processes.ts";

const TOKEN = "scrape-token";

async function scrape(url: string): Promise<string> {
  const response = await fetch(`${url}/_vestibule/metrics`, {
    headers: { authorization: `Bearer ${TOKEN}`, connection: "close" },
  });
  assert.equal(response.status, 200);
  return await response.text();
}

Deno.test("a scrape of any deno serve --parallel worker counts the requests of all of them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "metrics_workers_" });
  const serve = await startProcess("serve", {
    providerUrl: "http://127.0.0.1:9",
    kvPath: `${dir}/kv.sqlite3`,
    jobs: 4,
    env: { VESTIBULE_METRICS_TOKEN: TOKEN },
  });
  try {
    // Every worker must have met the others before the counts can add up.
    const deadline = performance.now() + 10_000;
    while (!/^vestibule_workers 4$/m.test(await scrape(serve.url))) {
      if (performance.now() > deadline) throw new Error("the 4 workers never all answered");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Concurrent requests on fresh connections, which the kernel spreads over the workers. The
    // fixture's region is a dead port, so each is a 502, counted in the 5xx class.
    const responses = await Promise.all(
      Array.from(
        { length: 40 },
        () => fetch(`${serve.url}/app`, { headers: { connection: "close" } }),
      ),
    );
    for (const response of responses) {
      await response.body?.cancel();
      assert.equal(response.status, 502);
    }
    for (let i = 0; i < 6; i++) {
      const text = await scrape(serve.url);
      assert.match(text, /^vestibule_workers 4$/m);
      assert.match(
        text,
        /^vestibule_requests_total\{rule="everything",type="regional",region="us",status_class="5xx"\} 40$/m,
      );
    }
  } finally {
    await serve.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts trims a mounted secret's line break off the metrics token, and refuses one no header can carry", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "metrics_token_" });
  try {
    await t.step("a trailing line break", async () => {
      const run = await startProcess("run", {
        providerUrl: "http://127.0.0.1:9",
        kvPath: `${dir}/kv.sqlite3`,
        env: { VESTIBULE_METRICS_TOKEN: `${TOKEN}\n` },
      });
      try {
        assert.match(await scrape(run.url), /^# TYPE vestibule_requests_total counter$/m);
      } finally {
        await run.stop();
      }
    });
    await t.step("a space inside: start-up stops with exit status 1", async () => {
      const { code, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "main.ts"],
        cwd: new URL("../", import.meta.url),
        env: {
          VESTIBULE_RULES: new URL("../rules.json", import.meta.url).pathname,
          AU_ORIGIN: "http://127.0.0.1:9",
          US_ORIGIN: "http://127.0.0.1:9",
          WEBSITE_ORIGIN: "http://127.0.0.1:9",
          AU_SECRET: "s",
          VESTIBULE_METRICS_TOKEN: "two words",
          NO_COLOR: "1",
          ...LOOPBACK_ONLY,
        },
        stdout: "null",
        stderr: "piped",
        // A build that accepted the token would serve forever: fail, do not hang.
        signal: AbortSignal.timeout(20_000),
      }).output();
      assert.equal(code, 1);
      assert.match(
        new TextDecoder().decode(stderr),
        /VESTIBULE_METRICS_TOKEN is not a bearer token/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
