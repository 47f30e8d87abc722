import assert from "node:assert/strict";
import { logEntry } from "./_access_log_entry.ts";
import { VestibuleMetrics } from "./metrics.ts";
import { WorkerMetrics } from "./worker_metrics.ts";
import { within } from "../tests/_servers.ts";

function record(metrics: VestibuleMetrics, status: number, upstreamMs: number): void {
  metrics.record(logEntry(status, { rule: "app", type: "regional", region: "au", upstreamMs }));
}

/** Waits (bounded) until `condition` holds. */
async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 2000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Waits until every worker has heard of all the others. */
function acquainted(workers: WorkerMetrics[]): Promise<void> {
  return waitFor(() => workers.every((w) => w.workers === workers.length), "the workers met");
}

/** A worker with a 50 ms scrape timeout, and a bare channel beside it to play a peer. */
async function withRawPeer(
  fn: (worker: WorkerMetrics, peer: BroadcastChannel) => Promise<void>,
): Promise<void> {
  const name = channel();
  const worker = new WorkerMetrics(new VestibuleMetrics(), { channel: name, timeoutMs: 50 });
  const peer = new BroadcastChannel(name);
  try {
    await fn(worker, peer);
  } finally {
    peer.close();
    worker.close();
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
      await waitFor(() => a.workers === 1, "a heard that b stopped");
      // With a 60 s timeout, a scrape still waiting for b would outlive the test.
      assert.match(await a.scrape(), /^vestibule_workers 1$/m);
    } finally {
      a.close();
    }
  });

  await t.step(
    "counter reset: a busy worker counts as it last answered, so no counter falls (Prometheus reads a fall as a restart)",
    async () => {
      const name = channel();
      const workers = [0, 1, 2].map(() =>
        new WorkerMetrics(new VestibuleMetrics(), { channel: name, timeoutMs: 50 })
      );
      try {
        await acquainted(workers);
        workers.forEach((w) => record(w.metrics, 200, 3));
        // Scraped through worker 0: workers 1 and 2 answer, and every worker hears the answers.
        assert.match(await workers[0].scrape(), /^vestibule_requests_total\{[^}]*\} 3$/m);
        // Worker 1 is now stuck in a long task (an operator's backtracking regex).
        workers[1].metrics.json = () => new Promise(() => {});
        record(workers[2].metrics, 200, 3);
        for (const scraped of [workers[2], workers[0]]) {
          const text = await scraped.scrape();
          assert.match(text, /^vestibule_requests_total\{[^}]*\} 4$/m);
          assert.match(text, /^vestibule_upstream_duration_seconds_count\{upstream="au"\} 4$/m);
          assert.match(text, /^vestibule_workers 2$/m, "the gauge counts those that answered");
        }
      } finally {
        workers.forEach((w) => w.close());
      }
    },
  );

  await t.step(
    "counter reset: the worker that served the last scrape, busy at the next, counts as it was then",
    async () => {
      const name = channel();
      const [a, b] = [0, 1].map(() =>
        new WorkerMetrics(new VestibuleMetrics(), { channel: name, timeoutMs: 50 })
      );
      try {
        await acquainted([a, b]);
        record(a.metrics, 200, 3);
        record(b.metrics, 200, 3);
        assert.match(await b.scrape(), /^vestibule_requests_total\{[^}]*\} 2$/m);
        for (let i = 0; i < 4; i++) record(a.metrics, 200, 3);
        // Scraped through a: its own 5 were merged there, and never sent as an answer.
        assert.match(await a.scrape(), /^vestibule_requests_total\{[^}]*\} 6$/m);
        a.metrics.json = () => new Promise(() => {});
        assert.match(await b.scrape(), /^vestibule_requests_total\{[^}]*\} 6$/m);
      } finally {
        a.close();
        b.close();
      }
    },
  );

  await t.step(
    "counter reset: a histogram's _sum reads the same whichever worker is scraped, never a hair lower",
    async () => {
      // Floating-point addition depends on the order of its terms: (0.3 + 0.2) + 0.1 is 0.6 and
      // (0.1 + 0.2) + 0.3 is 0.6000000000000001. A scrape that summed the workers in another order
      // read lower, and Prometheus takes any fall for a restart: rate() adds the whole sum.
      const name = channel();
      const workers = [300, 200, 100].map(() =>
        new WorkerMetrics(new VestibuleMetrics(), { channel: name })
      );
      try {
        await acquainted(workers);
        workers.forEach((w, i) => record(w.metrics, 200, [300, 200, 100][i]));
        const sums: number[] = [];
        for (let round = 0; round < 2; round++) {
          for (const scraped of workers) {
            const text = await scraped.scrape();
            sums.push(Number(
              /^vestibule_upstream_duration_seconds_sum\{upstream="au"\} (\S+)$/m.exec(text)![1],
            ));
          }
        }
        const falls = sums.flatMap((sum, i) => i > 0 && sum < sums[i - 1] ? [i] : []);
        assert.deepEqual(falls, [], `sums scrape after scrape: ${sums.join(", ")}`);
      } finally {
        workers.forEach((w) => w.close());
      }
    },
  );

  await t.step("a worker that has never answered is left out, and the gauge says so", async () => {
    // A peer that says hello but never answers a scrape, like a worker stuck in a long task.
    await withRawPeer(async (a, mute) => {
      mute.postMessage({ type: "hello", from: "mute" });
      await waitFor(() => a.workers === 2, "a heard the mute peer");
      record(a.metrics, 200, 3);
      const text = await a.scrape();
      assert.match(text, /^vestibule_workers 1$/m);
      assert.match(text, /^vestibule_requests_total\{[^}]*status_class="2xx"\} 1$/m);
    });
  });

  await t.step("a stranger's message that is not an answer is ignored", async () => {
    await withRawPeer(async (a, stranger) => {
      stranger.postMessage({ type: "answer", from: "x", scrape: "unknown", metrics: [] });
      stranger.postMessage({ type: "nonsense" });
      stranger.postMessage(null);
      stranger.postMessage("ask");
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.match(await a.scrape(), /^vestibule_workers 1$/m);
    });
  });

  await t.step(
    "shutdown: close() ends a scrape still waiting for a mute peer at once",
    async () => {
      const name = channel();
      // A long timeout, as a stop must not wait for it (deno serve drains, then exits).
      const a = new WorkerMetrics(new VestibuleMetrics(), { channel: name, timeoutMs: 30_000 });
      const mute = new BroadcastChannel(name);
      try {
        mute.postMessage({ type: "hello", from: "mute" });
        await waitFor(() => a.workers === 2, "a heard the mute peer");
        const scrape = a.scrape();
        await new Promise((resolve) => setTimeout(resolve, 20));
        const started = performance.now();
        a.close();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<string>((resolve) => timer = setTimeout(resolve, 2000, "late"));
        const text = await Promise.race([scrape, late]);
        clearTimeout(timer);
        assert.notEqual(text, "late", `the scrape still waited ${performance.now() - started} ms`);
        assert.match(text, /^vestibule_workers 1$/m);
        await scrape;
      } finally {
        mute.close();
        a.close();
      }
    },
  );

  await t.step(
    "counter reset: an answer from a worker it never heard of is not merged (the next scrape would drop its counts)",
    async () => {
      await withRawPeer(async (worker, peer) => {
        const theirs = new VestibuleMetrics();
        for (let i = 0; i < 5; i++) record(theirs, 200, 1);
        const offered = await theirs.json();
        // The peer says hello as "mute", but answers every ask as "x", a worker never heard of.
        peer.onmessage = (event) => {
          const message = event.data;
          if (message?.type !== "ask") return;
          peer.postMessage({ type: "answer", from: "x", scrape: message.scrape, metrics: offered });
        };
        peer.postMessage({ type: "hello", from: "mute" });
        await waitFor(() => worker.workers === 2, "the worker heard the peer");
        record(worker.metrics, 200, 1);
        const text = await worker.scrape();
        assert.match(text, /^vestibule_requests_total\{[^}]*status_class="2xx"\} 1$/m);
        assert.match(text, /^vestibule_workers 1$/m);
      });
    },
  );
}

Deno.test("WorkerMetrics scrape timeout: a scrape every worker answered returns at once, not after its timeout", async () => {
  // As above: one channel kept open works around a Deno 2.9.6 channel bug.
  const keeper = new BroadcastChannel(channel());
  const name = channel();
  const workers = [0, 1, 2].map(() =>
    new WorkerMetrics(new VestibuleMetrics(), { channel: name, timeoutMs: 30_000 })
  );
  try {
    const deadline = performance.now() + 2000;
    while (!workers.every((w) => w.workers === 3)) {
      if (performance.now() > deadline) throw new Error("Timed out waiting until the workers met");
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // Prometheus' default scrape_timeout is 10 s: a scrape held for the whole 30 s would fail.
    const text = await within(workers[0].scrape(), 10_000);
    assert.notEqual(
      text,
      "pending",
      "the scrape waited for its timeout though every worker answered",
    );
    assert.match(text as string, /^vestibule_workers 3$/m);
  } finally {
    workers.forEach((w) => w.close());
    keeper.close();
  }
});

Deno.test("a scrape does not wait much over a second for a worker that never answers", async () => {
  const name = channel();
  const keeper = new BroadcastChannel(channel());
  const peer = new BroadcastChannel(name);
  // A peer that is there (answers hello) but stuck: it never answers an ask.
  peer.onmessage = (event) => {
    const message = event.data as { type: string };
    if (message.type === "hello") peer.postMessage({ type: "here", from: "stuck-peer" });
  };
  // The default timeout: Prometheus gives a scrape 10 s in all.
  const worker = new WorkerMetrics(new VestibuleMetrics(), { channel: name });
  try {
    await waitFor(() => worker.workers === 2, "the peer was heard");
    const started = performance.now();
    assert.notEqual(await within(worker.scrape(), 5000), "pending", "the scrape waited over 5 s");
    assert.ok(performance.now() - started < 3000);
  } finally {
    worker.close();
    peer.close();
    keeper.close();
  }
});
