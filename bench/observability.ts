/**
 * @module What the access log, metrics and request ids cost a regional route, in requests per
 * second: an origin and two vestibule instances (observability on, and `observe: false`) run as
 * subprocesses on loopback, and `wrk` (or autocannon when wrk is not installed) loads one at a time
 * in alternating rounds. The "on" instance writes its log lines to stdout, which goes to
 * /dev/null. A third instance also counts response bytes through a TransformStream, to see what
 * that would cost. Then each of them, and a second "off" instance, is loaded at the same time as
 * "off" ({@linkcode sideBySide}), which shares this VM's slow and fast seconds between the two.
 *
 * Run alone: `deno run --allow-all bench/observability.ts` (wrk: `apt-get install -y wrk`);
 * `BENCH_PIN=1` pins the processes to CPUs with `taskset`.
 */
import { createApp } from "../app.ts";
import { bufferedLineWriter, LONE_WRITER_BATCH } from "../lib/line_writer.ts";
import { loadRulesForServing } from "../lib/serve_rules.ts";
import { cpuMicrosPerRequest, cpuTicks } from "./_cpu.ts";
import { median, pairRatios, runInPairs } from "./_pairs.ts";
import { ratioSummary, sideBySide } from "./_side_by_side.ts";

type Mode = "off" | "on" | "count";

const ROUNDS = 12;
const SECONDS = 1;
const WARMUP_SECONDS = 2;
const CONNECTIONS = 32;
/** Rounds and seconds of the side-by-side runs (two instances loaded at once). */
const SIDE_ROUNDS = 7;
const SIDE_SECONDS = 3;
/**
 * wrk's connections to each of the two: in an ad-hoc run of seven rounds, two instances of one
 * server read 0.96–1.07 of each other at 32 each and 0.99–1.02 at 16 (the two wrk and the origin
 * then leave the load generator's CPU room to spare).
 */
const SIDE_CONNECTIONS = 16;
/** A typical small HTML/JSON answer. */
const ORIGIN_BODY = JSON.stringify({ ok: true, items: Array.from({ length: 20 }, (_, i) => i) });

/** Runs the benchmark and returns a markdown table of requests per second. */
export async function benchObservability(): Promise<string> {
  const pin = await pinning();
  const loader = await chooseLoader(pin.load);
  const origin = await spawn(["--role", "origin"], pin.load);
  const modes: Mode[] = ["off", "on", "count"];
  const edges = new Map<Mode, Child>();
  const startEdge = (mode: Mode) =>
    spawn(["--role", "edge", "--mode", mode, "--origin", origin.url], pin.edge);
  // A second "off", loaded side by side with the first: what two equal servers read.
  let offAgain: Child | undefined;
  try {
    for (const mode of modes) edges.set(mode, await startEdge(mode));
    offAgain = await startEdge("off");
    for (const edge of [...edges.values(), offAgain]) await measure(loader, edge, WARMUP_SECONDS);
    const results = await runInPairs(
      "off",
      modes,
      ROUNDS,
      (mode) => measure(loader, edges.get(mode)!, SECONDS),
    );
    const rows = modes.map((mode) => {
      const paired = results.get(mode)!;
      const rpsRatio = median(pairRatios(paired, (r) => r.rps));
      const cpuRatio = median(pairRatios(paired, (r) => r.cpuUs));
      return `| ${LABELS[mode]} | ${fmt(median(paired.runs.map((r) => r.rps)))} | ${
        rpsRatio.toFixed(3)
      } | ${median(paired.runs.map((r) => r.cpuUs)).toFixed(1)} | ${cpuRatio.toFixed(3)} |`;
    });
    const sideRows: string[] = [];
    const others: Array<[string, Child]> = [
      [SIDE_LABELS.again, offAgain],
      [SIDE_LABELS.on, edges.get("on")!],
      [SIDE_LABELS.count, edges.get("count")!],
    ];
    for (const [label, other] of others) {
      const warm = (url: string) => loader.run(`${url}/app`, WARMUP_SECONDS, SIDE_CONNECTIONS);
      await Promise.all([warm(edges.get("off")!.url), warm(other.url)]);
      const result = await sideBySide(
        edges.get("off")!,
        other,
        SIDE_ROUNDS,
        async (url) => (await loader.run(`${url}/app`, SIDE_SECONDS, SIDE_CONNECTIONS)).requests,
        cpuMicrosPerRequest,
      );
      sideRows.push(
        `| ${label} | ${median(result.aUs).toFixed(1)} | ${median(result.bUs).toFixed(1)} | ${
          ratioSummary(result)
        } |`,
      );
    }
    return [
      `Regional route, GET /app → loopback origin (${ORIGIN_BODY.length}-byte JSON); ` +
      `${loader.name}, ${CONNECTIONS} connections, ${ROUNDS} rounds of ${SECONDS} s pairs ` +
      `(each mode right next to "off", order alternating) on ${navigator.hardwareConcurrency} cores, ` +
      `Deno ${Deno.version.deno}${pin.note}. Ratios are medians of per-pair ratios to "off"; ` +
      `CPU is the vestibule process's user+system time per request.`,
      "",
      "| vestibule | req/s (median) | req/s vs. off | CPU µs/request | CPU vs. off |",
      "| --- | ---: | ---: | ---: | ---: |",
      ...rows,
      "",
      `Side by side: "off" and the other instance loaded at the same time (${SIDE_CONNECTIONS} ` +
      `connections each, ${SIDE_ROUNDS} rounds of ${SIDE_SECONDS} s${
        pin.edge.length > 0 ? ", both on the last CPU" : ""
      }), so both share every slow or fast second of this VM; the ratio is the other's CPU per ` +
      "request over off's, median (min–max) of the rounds. The first row, two instances of off, " +
      "shows what equal servers read. Each server's own figure moves with what shares its CPU; " +
      "the ratio is what compares.",
      "",
      "| loaded at once with observe: false | off CPU µs/request | other CPU µs/request | CPU vs. off |",
      "| --- | ---: | ---: | ---: |",
      ...sideRows,
    ].join("\n");
  } finally {
    const all = [origin, ...edges.values(), ...(offAgain ? [offAgain] : [])];
    await Promise.all(all.map((c) => c.stop()));
  }
}

const SIDE_LABELS = {
  again: "a second observe: false instance (calibration)",
  on: "observe on, side by side",
  count: "on + bytes counted, side by side",
} as const;

const LABELS: Record<Mode, string> = {
  off: "observe: false",
  on: "observe on (log to /dev/null, metrics, span attributes)",
  count: "on + bytes counted by a TransformStream",
};

interface Run {
  rps: number;
  /** CPU time of the vestibule process per request, in microseconds. */
  cpuUs: number;
}

async function measure(loader: Loader, edge: Child, seconds: number): Promise<Run> {
  const before = edge.cpuTicks();
  const { rps, requests } = await loader.run(`${edge.url}/app`, seconds);
  const ticks = edge.cpuTicks() - before;
  return { rps, cpuUs: cpuMicrosPerRequest(ticks, requests) };
}

interface Child {
  url: string;
  /** utime + stime from /proc/<pid>/stat (Linux), in clock ticks. */
  cpuTicks(): number;
  stop(): Promise<void>;
}

/** Command prefixes that keep processes on their own CPUs (`BENCH_PIN=1`). */
interface Pinning {
  load: string[];
  edge: string[];
  note: string;
}

/**
 * With `BENCH_PIN=1`, `taskset` and 2+ CPUs: vestibule on the last CPU, origin and load generator
 * on CPU 0. On 2 cores that leaves vestibule under-loaded (its req/s then says little; its CPU per
 * request still does), so the default is to let the scheduler place everything.
 */
async function pinning(): Promise<Pinning> {
  const cpus = navigator.hardwareConcurrency;
  if (Deno.env.get("BENCH_PIN") !== "1") return { load: [], edge: [], note: "" };
  try {
    const probe = await new Deno.Command("taskset", { args: ["-c", "0", "true"] }).output();
    if (cpus >= 2 && probe.success) {
      return {
        load: ["taskset", "-c", "0"],
        edge: ["taskset", "-c", String(cpus - 1)],
        note: `; vestibule pinned to CPU ${cpus - 1}, origin and load generator to CPU 0`,
      };
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return { load: [], edge: [], note: "; not pinned (no taskset)" };
}

function command(prefix: string[], program: string, args: string[], options: Deno.CommandOptions) {
  const [first, ...rest] = [...prefix, program, ...args];
  return new Deno.Command(first, { ...options, args: rest });
}

/** Starts this file in another process and waits for the port it prints on stderr. */
async function spawn(args: string[], prefix: string[]): Promise<Child> {
  const deno = [
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    import.meta.filename!,
  ];
  const child = command(prefix, Deno.execPath(), [...deno, ...args], {
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/PORT (\d+)\n/.test(seen)) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`Cannot start ${args.join(" ")}: ${seen}`);
    seen += value;
  }
  const port = /PORT (\d+)\n/.exec(seen)![1];
  // Keep draining stderr so the child never blocks on a full pipe.
  const drained = (async () => {
    while (!(await reader.read()).done);
  })();
  return {
    url: `http://127.0.0.1:${port}`,
    cpuTicks: () => cpuTicks(child.pid),
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await drained;
    },
  };
}

interface Loader {
  name: string;
  /** Loads `url` for `seconds` with `connections` (default {@linkcode CONNECTIONS}). */
  run(
    url: string,
    seconds: number,
    connections?: number,
  ): Promise<{ rps: number; requests: number }>;
}

async function chooseLoader(prefix: string[]): Promise<Loader> {
  try {
    const version = await new Deno.Command("wrk", {
      args: ["-v"],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const name = new TextDecoder().decode(version.stdout).split(" ").slice(0, 2).join(" ");
    return {
      name: name || "wrk",
      async run(url, seconds, connections = CONNECTIONS) {
        const args = ["-t1", `-c${connections}`, `-d${seconds}s`, url];
        const out = await command(prefix, "wrk", args, { stdout: "piped", stderr: "piped" })
          .output();
        const text = new TextDecoder().decode(out.stdout);
        const rps = /Requests\/sec:\s+([\d.]+)/.exec(text)?.[1];
        const requests = /(\d+) requests in/.exec(text)?.[1];
        if (!out.success || !rps || !requests) throw new Error(`wrk failed: ${text}`);
        if (/Non-2xx|Socket errors/.test(text)) throw new Error(`wrk saw errors: ${text}`);
        return { rps: Number(rps), requests: Number(requests) };
      },
    };
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const { default: autocannon } = await import("npm:autocannon@9.0.0");
  return {
    name: "autocannon 9.0.0 (in this process, not pinned)",
    async run(url, seconds, connections = CONNECTIONS) {
      const result = await autocannon({ url, connections, duration: seconds });
      if (result.non2xx > 0 || result.errors > 0) throw new Error("autocannon saw errors");
      return { rps: result.requests.average, requests: result.requests.total };
    },
  };
}

function fmt(n: number): string {
  return Math.round(n).toString();
}

/** The subprocess side: an origin, or a vestibule in one mode. */
async function serve(args: string[]) {
  const arg = (name: string) => args[args.indexOf(name) + 1];
  const listen = { hostname: "127.0.0.1", port: 0, onListen: announce };
  if (arg("--role") === "origin") {
    Deno.serve(
      listen,
      () => new Response(ORIGIN_BODY, { headers: { "content-type": "application/json" } }),
    );
    return;
  }
  const mode = arg("--mode") as Mode;
  // Loaded as main.ts loads them, so this process's heap holds what a server's does (no zod).
  const rules = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    rules,
    JSON.stringify({
      regions: { au: { origin: arg("--origin") }, us: { origin: arg("--origin") } },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    }),
  );
  const config = await loadRulesForServing(rules, () => undefined);
  await Deno.remove(rules);
  // The same log writer as main.ts under `deno run`; stdout is /dev/null.
  const log = bufferedLineWriter(Deno.stdout, { batchBytes: LONE_WRITER_BATCH });
  const app = createApp({ config, observe: mode !== "off", log });
  if (mode !== "count") {
    Deno.serve(listen, app.fetch);
    return;
  }
  Deno.serve(listen, async (request, info) => {
    const response = await app.fetch(request, info);
    if (!response.body) return response;
    let bytes = 0;
    const counter = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        bytes += chunk.byteLength;
        controller.enqueue(chunk);
      },
      flush() {
        if (bytes < 0) console.log(bytes); // Keeps the count observable, as a log line would.
      },
    });
    return new Response(response.body.pipeThrough(counter), response);
  });
}

function announce({ port }: Deno.NetAddr) {
  console.error(`PORT ${port}`);
}

if (import.meta.main) {
  if (Deno.args.includes("--role")) await serve(Deno.args);
  else console.log(await benchObservability());
}
