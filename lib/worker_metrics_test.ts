import assert from "node:assert/strict";
import type { AccessLogEntry } from "./access_log.ts";
import { VestibuleMetrics } from "./metrics.ts";
import { WorkerMetrics } from "./worker_metrics.ts";

function record(metrics: VestibuleMetrics, status: number, upstreamMs: number): void {
  const entry: AccessLogEntry = {
    time: 0,
    requestId: "r",
    method: "GET",
    host: "h",
    path: "/",
    status,
    totalMs: upstreamMs,
    route: { rule: "app", type: "regional", region: "au", upstreamMs },
  };
  metrics.record(entry);
}

/** Waits (bounded) until every worker has heard of all the others. */
async function acquainted(workers: WorkerMetrics[]): Promise<void> {
  const deadline = performance.now() + 2000;
  while (workers.some((w) => w.workers !== workers.length)) {
    if (performance.now() > deadline) throw new Error("the workers never met");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A fresh channel name, so parallel test files never hear each other. */
const channel = () => `vestibule-metrics-test-${crypto.randomUUID()}`;

Deno.test("WorkerMetrics", async (t) => {
  // Deno 2.9.6: once every BroadcastChannel of an isolate has closed, a channel opened later can
  // fail to post from its message handler ("expected i32"). One channel open for the whole test
  // keeps the isolate's broadcast resource alive between steps. Workers never close theirs.
  const keeper = new BroadcastChannel(channel());
  try {
    await steps(t);
  } finally {
    keeper.close();
  }
});

async function steps(t: Deno.TestContext): Promise<void> {
  await t.step("a scrape of any worker sums every worker's counts and histograms", async () => {
    const name = channel();
    const workers = [0, 1, 2].map(() =>
      new WorkerMetrics(new VestibuleMetrics(), { channel: name })
    );
    try {
      await acquainted(workers);
      record(workers[0].metrics, 200, 3);
      record(workers[1].metrics, 200, 40);
      record(workers[1].metrics, 502, 1);
      workers[2].metrics.ocapCache("miss");
      for (const scraped of workers) {
        const text = await scraped.scrape();
        assert.match(text, /^vestibule_workers 3$/m);
        assert.match(text, /^vestibule_requests_total\{[^}]*status_class="2xx"\} 2$/m);
        assert.match(text, /^vestibule_requests_total\{[^}]*status_class="5xx"\} 1$/m);
        assert.match(text, /^vestibule_upstream_duration_seconds_count\{upstream="au"\} 3$/m);
        assert.match(
          text,
          /^vestibule_upstream_duration_seconds_bucket\{le="0.005",upstream="au"\} 2$/m,
        );
        assert.match(text, /^vestibule_ocap_cache_total\{result="miss"\} 1$/m);
      }
    } finally {
      workers.forEach((w) => w.close());
    }
  });

  await t.step("counts handed over at one scrape are not counted again at the next", async () => {
    const name = channel();
    const workers = [0, 1].map(() => new WorkerMetrics(new VestibuleMetrics(), { channel: name }));
    try {
      await acquainted(workers);
      record(workers[1].metrics, 200, 3);
      await workers[0].scrape();
      record(workers[1].metrics, 200, 3);
      const text = await workers[0].scrape();
      assert.match(text, /^vestibule_requests_total\{[^}]*status_class="2xx"\} 2$/m);
    } finally {
      workers.forEach((w) => w.close());
    }
  });

  await t.step("a worker that stopped is no longer waited for", async () => {
    const name = channel();
    const [a, b] = [0, 1].map(() =>
      new WorkerMetrics(new VestibuleMetrics(), { channel: name, timeoutMs: 60_000 })
    );
    try {
      await acquainted([a, b]);
      b.close();
      const deadline = performance.now() + 2000;
      while (a.workers !== 1 && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      // With a 60 s timeout, a scrape still waiting for b would outlive the test.
      assert.match(await a.scrape(), /^vestibule_workers 1$/m);
    } finally {
      a.close();
    }
  });

  await t.step("a worker that does not answer in time leaves it out, and says so", async () => {
    const name = channel();
    const a = new WorkerMetrics(new VestibuleMetrics(), { channel: name, timeoutMs: 50 });
    // A peer that says hello but never answers a scrape, like a worker stuck in a long task.
    const mute = new BroadcastChannel(name);
    try {
      mute.postMessage({ type: "hello", from: "mute" });
      const deadline = performance.now() + 2000;
      while (a.workers !== 2 && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.equal(a.workers, 2);
      record(a.metrics, 200, 3);
      const text = await a.scrape();
      assert.match(text, /^vestibule_workers 1$/m);
      assert.match(text, /^vestibule_requests_total\{[^}]*status_class="2xx"\} 1$/m);
    } finally {
      mute.close();
      a.close();
    }
  });

  await t.step("a stranger's message that is not an answer is ignored", async () => {
    const name = channel();
    const a = new WorkerMetrics(new VestibuleMetrics(), { channel: name, timeoutMs: 50 });
    const stranger = new BroadcastChannel(name);
    try {
      stranger.postMessage({ type: "answer", from: "x", scrape: "unknown", metrics: [] });
      stranger.postMessage({ type: "nonsense" });
      stranger.postMessage(null);
      stranger.postMessage("ask");
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.match(await a.scrape(), /^vestibule_workers 1$/m);
    } finally {
      stranger.close();
      a.close();
    }
  });
}
