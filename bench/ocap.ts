/**
 * @module OCAP benchmark: cache-hit latency through OCAP against a direct call to the provider
 * stand-in, and the fan-in of 200 concurrent callers across two processes on one KV file.
 * `deno task bench` calls {@linkcode benchOcap}; `deno run --allow-all bench/ocap.ts` runs it alone.
 */
import { startUpstream } from "../tests/_servers.ts";
import { tokenRequest } from "../tests/_ocap.ts";
import { startProcess, type VestibuleProcess } from "../tests/_processes.ts";

/** Sequential requests per cache-hit series. */
const HIT_REQUESTS = 1_000;
/** Concurrent callers per fan-in round, split evenly between the two processes. */
const FAN_IN_CALLERS = 200;
const FAN_IN_ROUNDS = 3;
/** How long the provider stand-in takes to answer a token request. */
const ORIGIN_DELAY_MS = 100;

/** Runs the benchmark and returns its results as a markdown table. */
export async function benchOcap(): Promise<string> {
  let originCalls = 0;
  let originAnsweredAt = 0;
  let originHeldMs = ORIGIN_DELAY_MS;
  const slowHeldMs: number[] = [];
  const provider = startUpstream(async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/slow") {
      // The fan-in baseline: every caller waits for its own origin answer, no OCAP.
      const started = performance.now();
      await new Promise((resolve) => setTimeout(resolve, ORIGIN_DELAY_MS));
      slowHeldMs.push(performance.now() - started);
    }
    if (path === "/token") {
      originCalls++;
      const started = performance.now();
      await new Promise((resolve) => setTimeout(resolve, ORIGIN_DELAY_MS));
      originAnsweredAt = performance.now();
      // The timer fires a few ms late here; "added latency" must not charge that to OCAP.
      originHeldMs = originAnsweredAt - started;
    }
    return Response.json({ access_token: "bench-token", token_type: "Bearer", expires_in: 3600 });
  }, { recordBody: false });
  const dir = await Deno.makeTempDir({ prefix: "ocap_bench_" });
  const processes: VestibuleProcess[] = [];
  try {
    const kvPath = `${dir}/kv.sqlite3`;
    processes.push(await startProcess("run", { providerUrl: provider.url, kvPath }));
    processes.push(await startProcess("run", { providerUrl: provider.url, kvPath }));
    const [a, b] = processes;

    // Cache hits: one miss fills the cache, then sequential hits on one process.
    const body = "grant_type=authorization_code&code=bench-hit";
    await (await fetch(tokenRequest(a.url, { body }))).arrayBuffer();
    const direct = await series(
      HIT_REQUESTS,
      () => fetch(`${provider.url}/userinfo`, { method: "POST", body }),
    );
    const viaOcap = await series(HIT_REQUESTS, async () => {
      const response = await fetch(tokenRequest(a.url, { body }));
      if (response.headers.get("ocap-cache") !== "hit") throw new Error("Expected a cache hit");
      return response;
    });

    // Baseline: as many concurrent callers straight at the stand-in, each with its own answer,
    // so the fan-in rows can be read against what 200 callers at once cost on this machine.
    const direct200 = await Promise.all(
      Array.from({ length: FAN_IN_CALLERS }, async () => {
        const started = performance.now();
        await (await fetch(`${provider.url}/slow`, { method: "POST", body })).arrayBuffer();
        return performance.now() - started;
      }),
    );
    const held = percentile(slowHeldMs, 50);
    const baseline = direct200.map((latency) => latency - held);

    // Fan-in: 200 concurrent identical callers over two processes, a new code each round.
    const rounds: Array<{ calls: number; added: number[]; tail: number }> = [];
    for (let round = 0; round < FAN_IN_ROUNDS; round++) {
      const before = originCalls;
      const roundBody = `grant_type=authorization_code&code=bench-fan-in-${round}-${Date.now()}`;
      let lastAnswer = 0;
      const latencies = await Promise.all(
        Array.from({ length: FAN_IN_CALLERS }, async (_, i) => {
          const started = performance.now();
          const response = await fetch(tokenRequest((i % 2 ? b : a).url, { body: roundBody }));
          await response.arrayBuffer();
          if (response.status !== 200) throw new Error(`Fan-in answered ${response.status}`);
          lastAnswer = Math.max(lastAnswer, performance.now());
          return performance.now() - started;
        }),
      );
      rounds.push({
        calls: originCalls - before,
        added: latencies.map((l) => l - originHeldMs),
        tail: lastAnswer - originAnsweredAt,
      });
    }

    const rows = [
      ["cache hit via OCAP, p50", ms(percentile(viaOcap, 50))],
      ["cache hit via OCAP, p99", ms(percentile(viaOcap, 99))],
      ["direct call to stand-in, p50", ms(percentile(direct, 50))],
      ["direct call to stand-in, p99", ms(percentile(direct, 99))],
      [
        `baseline: ${FAN_IN_CALLERS} concurrent direct calls, added latency p50`,
        ms(percentile(baseline, 50)),
      ],
      [
        `baseline: ${FAN_IN_CALLERS} concurrent direct calls, added latency max`,
        ms(Math.max(...baseline)),
      ],
      ...rounds.flatMap((r, i) => [
        [`fan-in round ${i + 1}: origin calls`, String(r.calls)],
        [`fan-in round ${i + 1}: added latency p50`, ms(percentile(r.added, 50))],
        [`fan-in round ${i + 1}: added latency max`, ms(Math.max(...r.added))],
        [`fan-in round ${i + 1}: origin answered → last caller answered`, ms(r.tail)],
      ]),
    ];
    return [
      `### OCAP (${HIT_REQUESTS} sequential hits; ${FAN_IN_CALLERS} callers over 2 processes on one KV file, origin ${ORIGIN_DELAY_MS} ms)`,
      "",
      "| measure | value |",
      "| --- | --- |",
      ...rows.map(([name, value]) => `| ${name} | ${value} |`),
    ].join("\n");
  } finally {
    await Promise.all(processes.map((p) => p.stop()));
    await provider.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function series(count: number, call: () => Promise<Response>): Promise<number[]> {
  for (let i = 0; i < 20; i++) await (await call()).arrayBuffer(); // Warm-up.
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await (await call()).arrayBuffer();
    out.push(performance.now() - started);
  }
  return out;
}

function percentile(values: number[], p: number): number {
  const sorted = values.toSorted((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function ms(value: number): string {
  return `${value.toFixed(2)} ms`;
}

if (import.meta.main) console.log(await benchOcap());
