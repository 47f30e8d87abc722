/**
 * @module Prometheus metrics of one app instance, kept in its own registry (prom-client), so two
 * apps in one process, as in the tests, never count each other's requests.
 */
import { Counter, Histogram, Registry } from "prom-client";
import type { AccessLogEntry } from "./access_log.ts";

/** What OCAP's cache did with a request; OCAP calls {@linkcode VestibuleMetrics.ocapCache}. */
export type OcapCacheResult = "hit" | "miss" | "coalesced";

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
  readonly #ocapCache = new Counter({
    name: "vestibule_ocap_cache_total",
    help: "OCAP cache lookups, by result (hit, miss, coalesced)",
    labelNames: ["result"] as const,
    registers: [this.#registry],
  });

  // prom-client hashes a label object on every inc(); the label sets here come from the rules
  // file, so their children are few and are looked up once, by a plain string key.
  readonly #requestSeries = new Map<string, { inc(): void }>();
  readonly #upstreamSeries = new Map<string, { observe(value: number): void }>();

  /** Counts one finished request from its access-log entry. */
  record(entry: AccessLogEntry): void {
    const { route } = entry;
    const rule = route.rule ?? "";
    const type = route.type ?? "";
    const region = route.region ?? "";
    const statusClass = `${Math.floor(entry.status / 100)}xx`;
    const key = `${rule}\u0000${type}\u0000${region}\u0000${statusClass}`;
    let series = this.#requestSeries.get(key);
    if (!series) {
      series = this.#requests.labels({ rule, type, region, status_class: statusClass });
      this.#requestSeries.set(key, series);
    }
    series.inc();
    const upstream = route.upstream ?? route.region;
    if (upstream !== undefined && route.upstreamMs !== undefined) {
      this.#upstreamSeconds(upstream).observe(route.upstreamMs / 1000);
    }
    if (route.type === "broadcast" && route.outcome !== undefined) {
      this.#broadcastOutcomes.inc({ rule: route.rule, outcome: route.outcome });
      for (const r of route.regions ?? []) {
        if (r.status !== undefined) {
          this.#upstreamSeconds(r.region).observe(r.ms / 1000);
        }
      }
    }
  }

  #upstreamSeconds(upstream: string): { observe(value: number): void } {
    let series = this.#upstreamSeries.get(upstream);
    if (!series) {
      series = this.#upstreamDuration.labels({ upstream });
      this.#upstreamSeries.set(upstream, series);
    }
    return series;
  }

  /** Counts one OCAP cache lookup (OCAP reports through `createApp`). */
  ocapCache(result: OcapCacheResult): void {
    this.#ocapCache.inc({ result });
  }

  /** The `Content-Type` of {@linkcode scrape}'s text (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.#registry.contentType;
  }

  /** Every metric in the Prometheus text exposition format. */
  scrape(): Promise<string> {
    return this.#registry.metrics();
  }
}
