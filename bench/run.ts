/**
 * @module `deno task bench`: end-to-end load on loopback, side by side in one run (ratios, since
 * this machine is noisy): origin direct vs a bare fetch pass-through vs vestibule (regional), then
 * broadcast latency, OCAP and observability cost. Needs wrk (Debian package `wrk`).
 *
 * Settings, from the environment: `BENCH_PIN=1` pins the observability table's processes, and each
 * side-by-side pair of the proxy table while it runs, to CPUs with `taskset`; `BENCH_DURATION`
 * (default `1s`) is one wrk run of a pair, `BENCH_ROUNDS` (default 12) the pairs per target,
 * `BENCH_CONNECTIONS` (default 50) wrk's `-c`; `BENCH_ONLY` runs the proxy table alone and writes
 * no `bench/latest.md`.
 */
import { benchObservability } from "./observability.ts";
import { benchOcap } from "./ocap.ts";
import { cpuMicrosPerRequest, cpuTicks } from "./_cpu.ts";
import { median, type PairedRuns, pairRatios, runInPairs } from "./_pairs.ts";
import { type LoadedServer, ratioSummary, sideBySide } from "./_side_by_side.ts";

const DURATION = Deno.env.get("BENCH_DURATION") ?? "1s";
const CONNECTIONS = Number(Deno.env.get("BENCH_CONNECTIONS") ?? 50);
const root = new URL("..", import.meta.url).pathname;
const children: Deno.ChildProcess[] = [];
/** The process listening on each port `spawn` opened, for its CPU time. */
const pidOnPort = new Map<number, number>();

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function spawn(script: string, env: Record<string, string>): Promise<number> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script],
    cwd: root,
    env: { ...env, PORT: String(port) },
    stdout: "null",
    stderr: "null",
  }).spawn();
  children.push(child);
  pidOnPort.set(port, child.pid);
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return port;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`Cannot start "${script}": port ${port} never opened`);
}

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  /** Requests completed in the run. */
  requests: number;
}

function ms(text: string): number {
  const m = text.match(/([\d.]+)(us|ms|s)/);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
}

async function wrk(
  url: string,
  options: { script?: string; connections?: number; duration?: string } = {},
): Promise<WrkResult> {
  const args = [
    "-t1",
    `-c${options.connections ?? CONNECTIONS}`,
    `-d${options.duration ?? DURATION}`,
    "--latency",
    url,
  ];
  if (options.script) args.unshift("-s", options.script);
  const out = await new Deno.Command("wrk", { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  const rps = Number(text.match(/Requests\/sec:\s+([\d.]+)/)?.[1]);
  const p50 = ms(text.match(/^\s+50%\s+(\S+)/m)?.[1] ?? "");
  const p99 = ms(text.match(/^\s+99%\s+(\S+)/m)?.[1] ?? "");
  const requests = Number(text.match(/^\s+(\d+) requests in/m)?.[1]);
  if (!rps) {
    throw new Error(`wrk printed no result:\n${text}${new TextDecoder().decode(out.stderr)}`);
  }
  return { rps, p50, p99, requests };
}

async function ensureWrk() {
  try {
    await new Deno.Command("wrk", { args: ["--version"], stdout: "null", stderr: "null" }).output();
  } catch {
    console.error("wrk is missing: installing Debian's package (apt-get install -y wrk)");
    await new Deno.Command("apt-get", { args: ["install", "-y", "wrk"], stdout: "null" }).output();
  }
}

async function writeRules(regions: Record<string, unknown>, rules: unknown[]): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    path,
    JSON.stringify({ regions, default_region: Object.keys(regions)[0], rules }),
  );
  return path;
}

const fmt = (n: number, d = 2) => n.toFixed(d);

/** Headers a browser sends on a page load of a pinned, logged-in user. */
const BROWSER_HEADERS: Record<string, string> = {
  "User-Agent":
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
  "Accept-Language": "en-AU,en;q=0.9",
  "Accept-Encoding": "gzip, deflate, br, zstd",
  "Cookie":
    "__Host-vestibule-region=us; sessionid=8f14e45fceea167a5a36dedd4bea2543; csrftoken=c4ca4238a0b923820dcc509a6f75849b",
  "Referer": "https://app.example.com/dashboard/",
  "Sec-Fetch-Dest": "document",
  "Sec-Fetch-Mode": "navigate",
  "Sec-Fetch-Site": "same-origin",
  "Upgrade-Insecure-Requests": "1",
};

/**
 * Twelve rounds of 1 s pairs. On this VM one process's CPU time per request moved by up to 2x
 * from one second to the next, so a ratio is only as good as the closeness in time of the two
 * runs it divides: each target is run right next to (b), and the median takes many such pairs.
 */
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 12);

/**
 * Compares every target with the baseline (b) in back-to-back pairs (`runInPairs`). Ratios are
 * medians of the per-pair ratios, with their range; req/s and latencies are medians of the
 * target's own runs.
 */
async function compareTargets(
  targets: ReadonlyArray<readonly [name: string, url: string]>,
  options: { script?: string } = {},
): Promise<string> {
  for (const [, url] of targets) await wrk(url, { ...options, connections: 10, duration: "2s" });
  const urls = new Map(targets);
  // The CPU time of the process wrk loads (the origin itself for (a)), per request.
  const measure = async (name: string) => {
    const url = urls.get(name)!;
    const pid = pidOnPort.get(Number(new URL(url).port))!;
    const before = cpuTicks(pid);
    const run = await wrk(url, options);
    return { ...run, cpuUs: cpuMicrosPerRequest(cpuTicks(pid) - before, run.requests) };
  };
  const results = await runInPairs(
    targets[1][0],
    targets.map(([name]) => name),
    ROUNDS,
    measure,
  );
  const ratios = (name: string) => pairRatios(results.get(name)!, (x) => x.rps);
  const cpuRatio = (name: string) => median(pairRatios(results.get(name)!, (x) => x.cpuUs));
  let md = "| target | req/s | p50 ms | p99 ms | req/s vs (b), median of pairs (min–max) " +
    "| CPU µs/request | CPU vs (b) |\n|---|---|---|---|---|---|---|\n";
  for (const [name] of targets) {
    const r = results.get(name)!.runs;
    const q = ratios(name);
    md += `| ${name} | ${fmt(median(r.map((x) => x.rps)), 0)} | ${
      fmt(median(r.map((x) => x.p50)))
    } | ${fmt(median(r.map((x) => x.p99)))} | ${fmt(median(q))} (${fmt(Math.min(...q))}–${
      fmt(Math.max(...q))
    }) | ${fmt(median(r.map((x) => x.cpuUs)), 1)} | ${fmt(cpuRatio(name))} |\n`;
  }
  const [cName] = targets[2];
  const { runs: c, baselines: cBase } = results.get(cName)!;
  md += `\n(c)/(b) requests/s: **${fmt(median(ratios(cName)))}** ` +
    `(target ≥ 0.90); p99 (c) − (b): **${
      fmt(median(c.map((x, i) => x.p99 - cBase[i].p99)))
    } ms** (target ≤ 1 ms). wrk -t1 -c${CONNECTIONS}, ${ROUNDS} rounds of ${DURATION} pairs, ` +
    `medians. CPU is the user+system time of the process wrk loads (for (a) the origin), per ` +
    `request; (c) spends **${fmt(cpuRatio(cName))}×** (b)'s, where 0.90× (b)'s req/s leaves ` +
    `it at most about 1.11× when CPU is what limits both.\n`;
  return md;
}

/**
 * Not pinned to CPUs, even with `BENCH_PIN=1` (the side-by-side pairs aside): a proxy confined to
 * one CPU shares it with V8's concurrent garbage collector, which tripled vestibule's p99 in a
 * trial run.
 */
async function proxyTable(): Promise<string> {
  const originPort = await spawn("bench/_origin.ts", {});
  const origin = `http://127.0.0.1:${originPort}`;
  const passPort = await spawn("bench/_passthrough.ts", { ORIGIN: origin });
  const honoPort = await spawn("bench/_hono_proxy.ts", { ORIGIN: origin });
  const floorPort = await spawn("bench/_forward_floor.ts", { ORIGIN: origin });
  const floorTimeoutPort = await spawn("bench/_forward_floor.ts", { ORIGIN: origin, TIMEOUT: "1" });
  const rules = await writeRules({ us: { origin } }, [{ name: "app", type: "regional" }]);
  const edgePort = await spawn("main.ts", {
    VESTIBULE_RULES: rules,
    VESTIBULE_METRICS_TOKEN: "bench",
  });
  const url = (port: number) => `http://127.0.0.1:${port}/x?y=1`;
  const minimal = await compareTargets([
    ["(a) origin direct", url(originPort)],
    ["(b) bare fetch pass-through", url(passPort)],
    ["(c) vestibule, regional route", url(edgePort)],
    ["(d) Hono's proxy helper (for comparison)", url(honoPort)],
    ["(e) floor: (b) + header copy and X-Forwarded-*", url(floorPort)],
    ["(f) floor: (e) + a per-request timeout signal", url(floorTimeoutPort)],
  ]);
  const script = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(
    script,
    Object.entries(BROWSER_HEADERS).map(([k, v]) => `wrk.headers[${q(k)}] = ${q(v)}\n`).join(""),
  );
  const browser = await compareTargets([
    ["(a) origin direct", url(originPort)],
    ["(b) bare fetch pass-through", url(passPort)],
    ["(c) vestibule, regional route (pinned)", url(edgePort)],
  ], { script });
  const passAgainPort = await spawn("bench/_passthrough.ts", { ORIGIN: origin });
  const side = await sideBySideTable(url(passPort), [
    ["a second (b) bare fetch pass-through (calibration)", url(passAgainPort)],
    ["(c) vestibule, regional route", url(edgePort)],
    ["(f) floor: (e) + a per-request timeout signal", url(floorTimeoutPort)],
  ]);
  return `wrk's own request (Host only):\n\n${minimal}\n` +
    `A browser's page load (${Object.keys(BROWSER_HEADERS).length} headers, pin and session ` +
    `cookies):\n\n${browser}\n` +
    `CPU per request, side by side with (b): both loaded at the same time (wrk's own request), ` +
    `so both share every slow or fast second of this VM:\n\n${side}`;
}

const SIDE_ROUNDS = 7;
const SIDE_SECONDS = 3;
/** Connections to each of the two; see `SIDE_CONNECTIONS` in `observability.ts`. */
const SIDE_CONNECTIONS = 16;

/**
 * Each target loaded at once with the server at `baseUrl` ({@linkcode sideBySide}). With
 * `BENCH_PIN=1` and `taskset`, the two share the last CPU for the pair's runs and wrk runs on CPU
 * 0, which made the rounds agree more closely; they are let loose again after.
 */
async function sideBySideTable(
  baseUrl: string,
  targets: ReadonlyArray<readonly [name: string, url: string]>,
): Promise<string> {
  const cpus = navigator.hardwareConcurrency;
  const pin = Deno.env.get("BENCH_PIN") === "1" && cpus >= 2 && await taskset(["-c", "0", "true"]);
  const server = (url: string): LoadedServer & { pid: number } => {
    const pid = pidOnPort.get(Number(new URL(url).port))!;
    return { url, pid, cpuTicks: () => cpuTicks(pid) };
  };
  const load = async (url: string, seconds = SIDE_SECONDS) => {
    const args = ["-t1", `-c${SIDE_CONNECTIONS}`, `-d${seconds}s`, url];
    const out = await new Deno.Command(pin ? "taskset" : "wrk", {
      args: pin ? ["-c", "0", "wrk", ...args] : args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const requests = Number(text.match(/^\s+(\d+) requests in/m)?.[1]);
    if (!requests || /Non-2xx|Socket errors/.test(text)) throw new Error(`wrk: ${text}`);
    return requests;
  };
  const base = server(baseUrl);
  let md = "| loaded at once with (b) | (b) CPU µs/request | its CPU µs/request | CPU vs (b), " +
    "median of rounds (min–max) |\n|---|---|---|---|\n";
  for (const [name, url] of targets) {
    const other = server(url);
    const pair = [base.pid, other.pid];
    if (pin) {
      for (const pid of pair) await taskset(["-a", "-p", "-c", String(cpus - 1), `${pid}`]);
    }
    try {
      await Promise.all([load(base.url, 2), load(other.url, 2)]);
      const result = await sideBySide(base, other, SIDE_ROUNDS, load, cpuMicrosPerRequest);
      md += `| ${name} | ${fmt(median(result.aUs), 1)} | ${fmt(median(result.bUs), 1)} | ${
        ratioSummary(result)
      } |\n`;
    } finally {
      if (pin) {
        for (const pid of pair) await taskset(["-a", "-p", "-c", `0-${cpus - 1}`, `${pid}`]);
      }
    }
  }
  return md + `\n${SIDE_ROUNDS} rounds of ${SIDE_SECONDS} s, wrk -t1 -c${SIDE_CONNECTIONS} on ` +
    `each${pin ? `; the pair pinned to CPU ${cpus - 1}, wrk to CPU 0` : ""}. ` +
    "Each server's own figure moves with what shares its CPU; the ratio is what compares. " +
    `(For the target: with CPU the limit, 0.90× (b)'s req/s allows (c) about 1.11× (b)'s CPU ` +
    "per request.)\n";
}

/** Runs `taskset` with `args`; false when it is missing or fails. */
async function taskset(args: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command("taskset", { args, stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

const q = JSON.stringify;

/** Broadcast waits 50–80 ms per request, so each run is longer than the proxy table's. */
const BROADCAST_ROUNDS = 6;
const BROADCAST_DURATION = "3s";

async function broadcastTable(): Promise<string> {
  const au = `http://127.0.0.1:${await spawn("bench/_origin.ts", { DELAY_MS: "50" })}`;
  const us = `http://127.0.0.1:${await spawn("bench/_origin.ts", { DELAY_MS: "80", LOGIN: "ok" })}`;
  const usFast = `http://127.0.0.1:${await spawn("bench/_origin.ts", {
    DELAY_MS: "50",
    LOGIN: "ok",
  })}`;
  const auSlow = `http://127.0.0.1:${await spawn("bench/_origin.ts", {
    DELAY_MS: "80",
    LOGIN: "ok",
  })}`;
  const success = { status: [302], set_cookie: "sessionid" };
  const match = { methods: ["POST"], path: "^/accounts/login/$" };
  const one = await spawn("main.ts", {
    VESTIBULE_RULES: await writeRules({ au: { origin: au }, us: { origin: us } }, [{
      name: "login",
      type: "broadcast",
      match,
      success,
    }]),
  });
  const multi = await spawn("main.ts", {
    VESTIBULE_RULES: await writeRules(
      { us: { origin: usFast }, au: { origin: auSlow } },
      [{ name: "login", type: "broadcast", match, success, allow_multiple_success: true }],
    ),
  });
  const script = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(
    script,
    `wrk.method = "POST"\nwrk.body = "username=james&password=eagle"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n`,
  );
  // Each case in pairs with the origin it waits for, called directly, as in the proxy table: a
  // single 5 s run of each moved the overhead by about half a millisecond from run to run.
  const login = (url: string, connections = 10) => () =>
    wrk(`${url}/accounts/login/`, { script, connections, duration: BROADCAST_DURATION });
  const slow = await runInPairs(
    "direct",
    ["direct", "broadcast"],
    BROADCAST_ROUNDS,
    (t) => login(t === "direct" ? us : `http://127.0.0.1:${one}`)(),
  );
  // One client at a time: the time one broadcast adds, without ten of them queueing for the CPU.
  const alone = await runInPairs(
    "direct",
    ["direct", "broadcast"],
    BROADCAST_ROUNDS,
    (t) => login(t === "direct" ? us : `http://127.0.0.1:${one}`, 1)(),
  );
  const fast = await runInPairs(
    "direct",
    ["direct", "broadcast"],
    BROADCAST_ROUNDS,
    (t) => login(t === "direct" ? usFast : `http://127.0.0.1:${multi}`)(),
  );
  const medianOf = (runs: WrkResult[]): WrkResult => ({
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    requests: median(runs.map((r) => r.requests)),
  });
  const overhead = (paired: PairedRuns<WrkResult>) =>
    median(paired.runs.map((r, i) => r.p50 - paired.baselines[i].p50));
  const direct80 = medianOf(slow.get("direct")!.runs);
  const direct50 = medianOf(fast.get("direct")!.runs);
  const a = medianOf(slow.get("broadcast")!.runs);
  const m = medianOf(fast.get("broadcast")!.runs);
  const direct80Alone = medianOf(alone.get("direct")!.runs);
  const aAlone = medianOf(alone.get("broadcast")!.runs);
  const row = (name: string, r: WrkResult, target: string, connections = 10) =>
    `| ${name} | ${connections} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.rps, 0)} | ${target} |\n`;
  return `| broadcast case | wrk -c | p50 ms | p99 ms | req/s | target |\n|---|---|---|---|---|---|\n` +
    row("baseline: the 80 ms origin called directly", direct80, "") +
    row("baseline: the 50 ms origin called directly", direct50, "") +
    row("regions answer after 50 ms (failure) and 80 ms (success)", a, "p50 ≤ 80 + 3 ms") +
    row(
      "allow_multiple_success, preferred region 50 ms, other 80 ms, both succeed",
      m,
      "p50 ≈ 50 ms",
    ) +
    row("baseline: the 80 ms origin called directly, one client", direct80Alone, "", 1) +
    row("regions answer after 50 ms and 80 ms, one client", aAlone, "p50 ≤ 80 + 3 ms", 1) +
    `\nMedians of ${BROADCAST_ROUNDS} rounds of ${BROADCAST_DURATION} pairs. Broadcast overhead ` +
    `over the slower region: p50 **${fmt(overhead(slow.get("broadcast")!))} ms** with 10 ` +
    `clients, **${fmt(overhead(alone.get("broadcast")!))} ms** with one; early ` +
    `answer with allow_multiple_success: p50 **${
      fmt(overhead(fast.get("broadcast")!))
    } ms** over the faster region (medians of per-pair differences).\n`;
}

if (import.meta.main) {
  await ensureWrk();
  const sections: string[] = [];
  try {
    sections.push("### Regional route vs origin and a bare pass-through\n\n" + await proxyTable());
    console.log(sections.at(-1));
    if (!Deno.env.get("BENCH_ONLY")) {
      sections.push("### Broadcast\n\n" + await broadcastTable());
      console.log(sections.at(-1));
    }
  } finally {
    for (const child of children) {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
    }
  }
  if (Deno.env.get("BENCH_ONLY")) Deno.exit(0);
  sections.push(await benchOcap());
  console.log(sections.at(-1));
  sections.push("### Observability on vs off\n\n" + await benchObservability());
  console.log(sections.at(-1));
  const header = `# Latest \`deno task bench\`${
    Deno.env.get("BENCH_PIN") === "1" ? " (BENCH_PIN=1)" : ""
  }, ${
    new Date().toISOString().slice(0, 10)
  }, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}\n`;
  const report = [header, ...sections].join("\n");
  await Deno.writeTextFile(new URL("./latest.md", import.meta.url), report);
}
