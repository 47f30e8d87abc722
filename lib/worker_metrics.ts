/**
 * @module One scrape for every worker of `deno serve --parallel`. Each worker is an isolate with
 * its own registry, and a scrape reaches whichever worker accepts the connection, so on its own it
 * would show that worker's share of the traffic. The scraped worker asks the others over a
 * `BroadcastChannel` (which joins the isolates of one process and nothing else) and merges their
 * answers with prom-client's `AggregatorRegistry.aggregate`, which sums counters, histogram
 * buckets and the `vestibule_workers` gauge. Separate instances stay separate scrape targets, as
 * Prometheus expects.
 */
import { BroadcastChannel } from "node:worker_threads";
import { AggregatorRegistry } from "prom-client";
import { type MetricsJson, type VestibuleMetrics, WORKERS_GAUGE } from "./metrics.ts";

type Message =
  /** A worker started (or is asking who is there). */
  | { type: "hello"; from: string }
  /** The answer to `hello`. */
  | { type: "here"; from: string }
  /** A worker is stopping. */
  | { type: "bye"; from: string }
  /** A scrape, with the asking worker's own counts, which the others keep as its latest. */
  | { type: "ask"; from: string; scrape: string; metrics: MetricsJson }
  | { type: "answer"; from: string; scrape: string; metrics: MetricsJson };

/** Options for {@linkcode WorkerMetrics}. */
export interface WorkerMetricsOptions {
  /** The `BroadcastChannel` name; the workers of one process share it. */
  channel?: string;
  /** How long a scrape waits for the other workers before answering with those it has. */
  timeoutMs?: number;
}

/** This worker's metrics, able to answer a scrape for all the workers of its process. */
export class WorkerMetrics {
  readonly #id = crypto.randomUUID();
  readonly #peers = new Set<string>();
  /**
   * Every peer's latest counts, from its answer to any worker's scrape (answers go to the whole
   * channel) or its own scrape's ask: a peer too busy to answer is merged as it last spoke. Left out, its share made every counter
   * fall, and Prometheus reads a fall as a restart: `rate()` showed a spike of the whole count.
   */
  readonly #lastAnswers = new Map<string, MetricsJson>();
  /** Scrapes in progress: how to take an answer, and how to stop waiting. */
  readonly #waiting = new Map<
    string,
    { answer(from: string, metrics: MetricsJson): void; done(): void }
  >();
  #closed = false;
  readonly #channel: BroadcastChannel;
  readonly #timeoutMs: number;

  constructor(readonly metrics: VestibuleMetrics, options: WorkerMetricsOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? 1000;
    // Node's BroadcastChannel is Deno's own with `unref()`: a channel that kept the event loop
    // alive would stop `deno serve` from ever finishing its graceful shutdown on SIGTERM.
    this.#channel = new BroadcastChannel(options.channel ?? "vestibule-metrics").unref();
    this.#channel.onmessage = (event) => {
      // A failed answer only leaves this worker out of one scrape; it must not end the process.
      this.#receive((event as MessageEvent<Message>).data).catch((error) =>
        console.error(JSON.stringify({ msg: "metrics answer failed", error: String(error) }))
      );
    };
    // Workers that are already listening answer `here`; later ones send their own `hello`.
    this.#post({ type: "hello", from: this.#id });
  }

  /** The same as a single registry's. */
  get contentType(): string {
    return this.metrics.contentType;
  }

  /** The workers known to this one, itself included. */
  get workers(): number {
    return this.#peers.size + 1;
  }

  /**
   * The Prometheus text of every worker, merged: as it answers within the timeout, else as it
   * last answered.
   */
  async scrape(): Promise<string> {
    if (this.#peers.size === 0) return await this.metrics.scrape(); // `deno run`: nothing to merge.
    const own = await this.metrics.json();
    const merged = new Map<string, MetricsJson>([[this.#id, own]]);
    const missing = new Set(this.#peers);
    const scrape = crypto.randomUUID();
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiting.delete(scrape);
        resolve();
      };
      // A worker stuck in a long task must not hold the scrape: answer with the others.
      const timer = setTimeout(done, this.#timeoutMs);
      const answer = (from: string, metrics: MetricsJson) => {
        if (!missing.delete(from)) return;
        merged.set(from, metrics);
        if (missing.size === 0) done();
      };
      this.#waiting.set(scrape, { answer, done });
      this.#post({ type: "ask", from: this.#id, scrape, metrics: own });
    });
    for (const peer of missing) {
      const last = this.#lastAnswers.get(peer);
      // `vestibule_workers` counts those that answered this time: the gauge shows the staleness.
      if (last) merged.set(peer, last.filter((metric) => metric.name !== WORKERS_GAUGE));
    }
    // Summed in one order whichever worker is scraped: floating-point sums (a histogram's `_sum`)
    // depend on the order of their terms, and one a hair lower reads as a restart to Prometheus.
    const ordered = [...merged.keys()].sort().map((id) => merged.get(id)!);
    return await AggregatorRegistry.aggregate(ordered).metrics();
  }

  /** Tells the other workers this one is gone, and closes the channel. */
  close(): void {
    if (this.#closed) return;
    this.#post({ type: "bye", from: this.#id });
    this.#closed = true;
    this.#channel.close();
    for (const { done } of [...this.#waiting.values()]) done();
  }

  #post(message: Message): void {
    if (!this.#closed) this.#channel.postMessage(message);
  }

  async #receive(message: Message): Promise<void> {
    if (typeof message !== "object" || message === null) return; // Not one of ours.
    switch (message.type) {
      case "hello":
        this.#peers.add(message.from);
        this.#post({ type: "here", from: this.#id });
        return;
      case "here":
        this.#peers.add(message.from);
        return;
      case "bye":
        this.#peers.delete(message.from);
        this.#lastAnswers.delete(message.from);
        return;
      case "ask": {
        this.#peers.add(message.from);
        this.#lastAnswers.set(message.from, message.metrics);
        const metrics = await this.metrics.json();
        this.#post({ type: "answer", from: this.#id, scrape: message.scrape, metrics });
        return;
      }
      case "answer":
        if (this.#peers.has(message.from)) this.#lastAnswers.set(message.from, message.metrics);
        this.#waiting.get(message.scrape)?.answer(message.from, message.metrics);
        return;
    }
  }
}
