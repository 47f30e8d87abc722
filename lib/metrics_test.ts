import assert from "node:assert/strict";
import { logEntry } from "./_access_log_entry.ts";
import { VestibuleMetrics } from "./metrics.ts";

const entry = logEntry;

Deno.test("VestibuleMetrics counts requests by rule, type, region and status class", async () => {
  const metrics = new VestibuleMetrics();
  metrics.record(entry(200, { rule: "app", type: "regional", region: "au", upstreamMs: 3 }));
  metrics.record(entry(204, { rule: "app", type: "regional", region: "au", upstreamMs: 40 }));
  metrics.record(entry(504, { rule: "app", type: "regional", region: "au", error: "x" }));
  const text = await metrics.scrape();
  assert.match(
    text,
    /^vestibule_requests_total\{rule="app",type="regional",region="au",status_class="2xx"\} 2$/m,
  );
  assert.match(text, /status_class="5xx"\} 1$/m);
  assert.match(text, /^vestibule_upstream_duration_seconds_bucket\{le="0.005",upstream="au"\} 1$/m);
  assert.match(text, /^vestibule_upstream_duration_seconds_bucket\{le="0.05",upstream="au"\} 2$/m);
  assert.match(text, /^vestibule_upstream_duration_seconds_count\{upstream="au"\} 2$/m);
  const sum = /^vestibule_upstream_duration_seconds_sum\{upstream="au"\} (\S+)$/m.exec(text)?.[1];
  assert.ok(Math.abs(Number(sum) - 0.043) < 1e-9, `sum ${sum}`);
  assert.doesNotMatch(text, /^vestibule_upstream_errors_total\{/m, "x is no upstream's error");
});

Deno.test("VestibuleMetrics counts each upstream's failed calls by error", async () => {
  const metrics = new VestibuleMetrics();
  metrics.record(
    entry(504, { rule: "app", type: "regional", region: "au", error: "upstream_timeout" }),
  );
  metrics.record(
    entry(502, { rule: "app", type: "regional", region: "au", error: "upstream_timeout" }),
  );
  metrics.record(
    entry(502, { rule: "web", type: "global", upstream: "website", error: "upstream_invalid" }),
  );
  metrics.record(entry(404, { error: "no_rule" }));
  const text = await metrics.scrape();
  assert.match(
    text,
    /^vestibule_upstream_errors_total\{upstream="au",error="upstream_timeout"\} 2$/m,
  );
  assert.match(
    text,
    /^vestibule_upstream_errors_total\{upstream="website",error="upstream_invalid"\} 1$/m,
  );
  assert.equal(text.match(/^vestibule_upstream_errors_total\{/gm)?.length, 2);
});

Deno.test("VestibuleMetrics counts broadcast outcomes and each answering region's latency", async () => {
  const metrics = new VestibuleMetrics();
  metrics.record(entry(302, {
    rule: "login",
    type: "broadcast",
    region: "au",
    outcome: "success",
    regions: [
      { region: "au", status: 302, ms: 5 },
      { region: "us", error: "timeout", ms: 10_000 },
    ],
  }));
  const text = await metrics.scrape();
  assert.match(text, /^vestibule_broadcast_outcomes_total\{rule="login",outcome="success"\} 1$/m);
  assert.match(text, /^vestibule_upstream_duration_seconds_count\{upstream="au"\} 1$/m);
  assert.doesNotMatch(
    text,
    /^vestibule_upstream_duration_seconds\w*\{[^}]*upstream="us"/m,
    "a region that did not answer has no latency",
  );
  assert.match(
    text,
    /^vestibule_upstream_errors_total\{upstream="us",error="upstream_timeout"\} 1$/m,
  );
});

Deno.test("VestibuleMetrics.ocapCache() counts OCAP results, and two instances never share counts", async () => {
  const a = new VestibuleMetrics();
  const b = new VestibuleMetrics();
  a.ocapCache("hit");
  a.ocapCache("hit");
  a.ocapCache("coalesced");
  b.ocapCache("miss");
  const textA = await a.scrape();
  assert.match(textA, /^vestibule_ocap_cache_total\{result="hit"\} 2$/m);
  assert.match(textA, /^vestibule_ocap_cache_total\{result="coalesced"\} 1$/m);
  assert.doesNotMatch(textA, /result="miss"/);
  assert.match(await b.scrape(), /^vestibule_ocap_cache_total\{result="miss"\} 1$/m);
});

Deno.test("VestibuleMetrics: wrong counts, a 499 or 451 is a 4xx, never a 5xx that pages someone", async () => {
  const metrics = new VestibuleMetrics();
  for (const status of [451, 499, 299]) {
    metrics.record(entry(status, { rule: "app", type: "regional", region: "au" }));
  }
  const text = await metrics.scrape();
  assert.match(text, /^vestibule_requests_total\{[^}]*status_class="4xx"\} 2$/m);
  assert.match(text, /^vestibule_requests_total\{[^}]*status_class="2xx"\} 1$/m);
  assert.doesNotMatch(text, /status_class="[35]xx"/);
});

Deno.test("VestibuleMetrics: wrong counts, a redirect or a pinned answer is no broadcast outcome", async () => {
  const metrics = new VestibuleMetrics();
  metrics.record(entry(301, { rule: "old-help", type: "global", outcome: "redirect" }));
  metrics.record(entry(200, { rule: "app", type: "regional", region: "au", outcome: "pinned" }));
  const text = await metrics.scrape();
  assert.doesNotMatch(text, /^vestibule_broadcast_outcomes_total\{/m);
});

Deno.test("VestibuleMetrics: memory exhaustion, a busy series holds no memory per request", async () => {
  const metrics = new VestibuleMetrics();
  const one = entry(200, { rule: "app", type: "regional", region: "au" });
  metrics.record(one);
  await metrics.scrape();
  const before = Deno.memoryUsage().heapUsed;
  for (let i = 0; i < 300_000; i++) metrics.record(one);
  const grown = Deno.memoryUsage().heapUsed - before;
  assert.ok(grown < 8 * 1024 * 1024, `heap grew ${(grown / 1048576).toFixed(1)} MiB`);
  assert.match(await metrics.scrape(), /status_class="2xx"\} 300001$/m);
});

Deno.test("VestibuleMetrics: a series with no new requests does not hide the counts of the series after it", async () => {
  const metrics = new VestibuleMetrics();
  metrics.record(entry(200, { rule: "app", type: "regional", region: "au", upstreamMs: 1 }));
  metrics.record(entry(200, { rule: "app", type: "regional", region: "us", upstreamMs: 1 }));
  await metrics.scrape();
  // Only the second series gets traffic before the next scrape.
  metrics.record(entry(200, { rule: "app", type: "regional", region: "us", upstreamMs: 1 }));
  const text = await metrics.scrape();
  assert.match(
    text,
    /^vestibule_requests_total\{rule="app",type="regional",region="us",status_class="2xx"\} 2$/m,
  );
});

Deno.test("5xx inflation: an OCAP caller coalesced onto a failed provider call is no upstream error of its own", async () => {
  const metrics = new VestibuleMetrics();
  const failed = { upstream: "provider", error: "upstream_timeout" };
  metrics.record(entry(504, { ...failed, outcome: "miss" }));
  metrics.record(entry(504, { ...failed, outcome: "coalesced" }));
  metrics.record(entry(504, { ...failed, outcome: "coalesced" }));
  const text = await metrics.scrape();
  assert.match(
    text,
    /^vestibule_upstream_errors_total\{upstream="provider",error="upstream_timeout"\} 1$/m,
  );
});
