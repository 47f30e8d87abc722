/**
 * @module Prometheus metrics of one app instance, kept in its own registry (prom-client), so two
 * apps in one process, as in the tests, never count each other's requests.
 */
import {
  Counter,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from "prom-client";
import type { AccessLogEntry } from "./access_log.ts";

interface RequestSeries {
  labels: { rule: string; type: string; region: string; status_class: string };
  pending: number;
}

/** One registry's metrics as prom-client's JSON; it survives `structuredClone`. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** What OCAP's cache did with a request; OCAP calls {@linkcode VestibuleMetrics.ocapCache}. */
export type OcapCacheResult = "hit" | "miss" | "coalesced";

/** The errors of one upstream call, as the access log's `error` names them. */
const UPSTREAM_ERRORS = new Set([
  "upstream_unavailable",
  "upstream_timeout",
  "upstream_invalid",
  "loop_detected", // the upstream's origin points back at this vestibule
]);

/** A broadcast region's `error` in the access line → its `vestibule_upstream_errors_total` label. */
const BROADCAST_REGION_ERRORS = new Map([
  ["timeout", "upstream_timeout"],
  ["unavailable", "upstream_unavailable"],
  ["invalid", "upstream_invalid"],
]);

/** The gauge of the isolates a scrape includes; `worker_metrics.ts` leaves it out of stale answers. */
export const WORKERS_GAUGE = "vestibule_workers";

/**
 * Upstream latency buckets in seconds: loopback-fast answers up to the default 30 s
 * `timeout_ms`, so a histogram can tell a slow region from a timing-out one.
 */
const UPSTREAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The router's counters and histograms. Label values come from the rules file (rule, type,
 * region, upstream, outcome) or a status class, never from the request, so a client cannot
 * grow the number of series.
 */
export class VestibuleMetrics {
  readonly #registry = new Registry();
  readonly #requests = new Counter({
    name: "vestibule_requests_total",
    help: "Requests routed, by rule, rule type, region and status class",
    labelNames: ["rule", "type", "region", "status_class"] as const,
    registers: [this.#registry],
    // Requests are counted in plain numbers below and handed over when Prometheus scrapes:
    // prom-client hashes and validates the label set on every inc(), even on a child.
    collect: () => {
      for (const series of this.#requestSeries) {
        if (series.pending === 0) continue;
        this.#requests.inc(series.labels, series.pending);
        series.pending = 0;
      }
    },
  });
  readonly #upstreamDuration = new Histogram({
    name: "vestibule_upstream_duration_seconds",
    help: "Time until an upstream's response headers, by region (or global upstream name)",
    labelNames: ["upstream"] as const,
    buckets: UPSTREAM_BUCKETS,
    registers: [this.#registry],
  });
  readonly #broadcastOutcomes = new Counter({
    name: "vestibule_broadcast_outcomes_total",
    help: "Broadcast decisions, by rule and outcome (success, failure, ambiguous, unavailable)",
    labelNames: ["rule", "outcome"] as const,
    registers: [this.#registry],
  });
  readonly #upstreamErrors = new Counter({
    name: "vestibule_upstream_errors_total",
    help: "Upstream calls that got no usable answer, by region (or global upstream name) and error",
    labelNames: ["upstream", "error"] as const,
    registers: [this.#registry],
  });
  readonly #webSocketsOverloaded = new Counter({
    name: "vestibule_websocket_overloaded_total",
    help:
      "WebSocket relays closed with 4013 because a peer did not read what it was sent (or the relays together queued over their budget), by region (or global upstream name)",
    labelNames: ["upstream"] as const,
    registers: [this.#registry],
  });
  readonly #ocapCache = new Counter({
    name: "vestibule_ocap_cache_total",
    help: "OCAP cache lookups, by result (hit, miss, coalesced)",
    labelNames: ["result"] as const,
    registers: [this.#registry],
  });

  /** 1 in every isolate: summed over the workers a scrape merged (see `worker_metrics.ts`). */
  readonly #workers = new Gauge({
    name: WORKERS_GAUGE,
    help:
      "Isolates whose counts this scrape includes (the deno serve --parallel workers that answered)",
    registers: [this.#registry],
  });

  constructor() {
    this.#workers.set(1);
  }

  /** Request counts not yet handed to prom-client, by rule, region and status class. */
  readonly #requestSeries: RequestSeries[] = [];
  readonly #requestIndex = new Map<string, Map<string, RequestSeries[]>>();
  // The upstream label comes from the rules file, so its children are few; looked up once.
  readonly #upstreamSeries = new Map<string, { observe(value: number): void }>();

  /** Counts one finished request from its access-log entry. */
  record(entry: AccessLogEntry): void {
    const { route } = entry;
    this.#requestCounter(route.rule ?? "", route.type ?? "", route.region ?? "", entry.status)
      .pending++;
    const upstream = route.upstream ?? route.region;
    if (upstream !== undefined && route.upstreamMs !== undefined) {
      this.#upstreamSeconds(upstream).observe(route.upstreamMs / 1000);
    }
    if (
      upstream !== undefined && route.error !== undefined && UPSTREAM_ERRORS.has(route.error) &&
      // An OCAP answer from the cache or another caller's call is no call of this request's own.
      route.outcome !== "hit" && route.outcome !== "coalesced"
    ) {
      this.#upstreamErrors.inc({ upstream, error: route.error });
    }
    if (route.type !== "broadcast") return;
    if (route.outcome !== undefined) {
      this.#broadcastOutcomes.inc({ rule: route.rule, outcome: route.outcome });
    }
    // Every region that answered, also when the client left before an outcome (a 499).
    for (const r of route.regions ?? []) {
      if (r.status !== undefined) this.#upstreamSeconds(r.region).observe(r.ms / 1000);
      else {
        const error = r.error === undefined ? undefined : BROADCAST_REGION_ERRORS.get(r.error);
        if (error) this.#upstreamErrors.inc({ upstream: r.region, error });
      }
    }
  }

  /** A rule's name decides its type, so rule, region and status class find the series. */
  #requestCounter(rule: string, type: string, region: string, status: number): RequestSeries {
    let byRegion = this.#requestIndex.get(rule);
    if (!byRegion) this.#requestIndex.set(rule, byRegion = new Map());
    let byClass = byRegion.get(region);
    if (!byClass) byRegion.set(region, byClass = []);
    const statusClass = Math.floor(status / 100);
    let series = byClass[statusClass];
    if (!series) {
      const labels = { rule, type, region, status_class: `${statusClass}xx` };
      byClass[statusClass] = series = { labels, pending: 0 };
      this.#requestSeries.push(series);
    }
    return series;
  }

  #upstreamSeconds(upstream: string): { observe(value: number): void } {
    let series = this.#upstreamSeries.get(upstream);
    if (!series) {
      series = this.#upstreamDuration.labels({ upstream });
      this.#upstreamSeries.set(upstream, series);
    }
    return series;
  }

  /**
   * Counts one WebSocket relay given up on a peer that did not read: the access line was written
   * at the upgrade, so this is the one place such a close shows.
   */
  webSocketOverloaded(upstream: string): void {
    this.#webSocketsOverloaded.inc({ upstream });
  }

  /** Counts one OCAP cache lookup (OCAP reports through `createApp`). */
  ocapCache(result: OcapCacheResult): void {
    this.#ocapCache.inc({ result });
  }

  /** The `Content-Type` of {@linkcode scrape}'s text (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.#registry.contentType;
  }

  /** Every metric as prom-client's JSON, for merging with other workers' (`worker_metrics.ts`). */
  json(): Promise<MetricsJson> {
    return this.#registry.getMetricsAsJSON();
  }

  /** Every metric in the Prometheus text exposition format. */
  scrape(): Promise<string> {
    return this.#registry.metrics();
  }
}
