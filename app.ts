/** @module Builds the vestibule HTTP app from its dependencies; `main.ts` wires the real ones. */
import { Hono } from "hono";
import type { CountryLookup } from "./lib/assume_region.ts";
import { assumeRegion } from "./lib/assume_region.ts";
import type { Config } from "./lib/compile_rules.ts";
import { errorResponse, HttpError } from "./lib/http_error.ts";
import { findRule } from "./lib/match_rule.ts";
import { VestibuleMetrics } from "./lib/metrics.ts";
import { metricsResponse } from "./lib/metrics_endpoint.ts";
import { createObserver, type Observed, UNOBSERVED } from "./lib/observe.ts";
import { readPin } from "./lib/pin.ts";
import { viewRequest } from "./lib/request_view.ts";
import { BodyTooLargeError, BufferedBody } from "./lib/request_body.ts";
import type { RouteContext } from "./lib/route_context.ts";
import { handleBroadcast } from "./routes/broadcast.ts";
import { handleGlobal } from "./routes/global.ts";
import { createOcapHandler } from "./routes/ocap.ts";
import { handleRegional } from "./routes/regional.ts";

/** What the app needs from the outside world; tests pass their own. */
export interface AppDeps {
  config: Config;
  /** Deno KV, for OCAP's cross-isolate state. */
  kv?: Deno.Kv;
  /** Milliseconds since the epoch; injected so tests can control time. */
  now?: () => number;
  /** IP → country, when `geo.ip_lookup` is on. */
  countryLookup?: CountryLookup;
  /** Writes one access-log line per request; default `console.log`. */
  log?: (line: string) => void;
  /** Bearer token for `/_vestibule/metrics`; without one the endpoint answers 404. */
  metricsToken?: string;
  /** `false` turns off the access log, metrics, request ids and span attributes (benchmarks). */
  observe?: boolean;
}

type Env = { Bindings: Partial<Deno.ServeHandlerInfo<Deno.NetAddr>> };

/** Builds the app. Serve it with `Deno.serve(app.fetch)` so handlers see the client address. */
export function createApp(deps: AppDeps): Hono<Env> {
  const { config } = deps;
  const now = deps.now ?? Date.now;
  const app = new Hono<Env>();

  app.get("/_vestibule/health", (c) => c.json({ status: "ok" }));
  const metrics = new VestibuleMetrics();
  app.get(
    "/_vestibule/metrics",
    (c) => metricsResponse(c.req.raw, { metrics, token: deps.metricsToken }),
  );
  const observe = deps.observe === false ? UNOBSERVED : createObserver({
    log: deps.log ?? console.log,
    metrics,
    now,
    serverTiming: config.serverTiming,
    debugHeaders: config.debugHeaders,
  });
  if (config.ocap) {
    if (!deps.kv) throw new TypeError("Cannot mount OCAP: createApp() needs a kv store");
    const { pin, bodyLimitBytes } = config;
    const ocap = createOcapHandler(config.ocap, {
      kv: deps.kv,
      now,
      pin,
      bodyLimitBytes,
      onCache: (result) => metrics.ocapCache(result),
    });
    app.all(`${config.ocap.path}/*`, (c) => observe(c.req.raw, c.req.path, () => ocap(c.req.raw)));
  }

  app.all(
    "*",
    (c) => observe(c.req.raw, c.req.path, (observed) => route(c.req.raw, observed, c.env)),
  );

  /** Sorts one request by the rule table and hands it to the rule type's processor. */
  async function route(
    request: Request,
    observed: Observed,
    info: Env["Bindings"] | undefined,
  ): Promise<Response> {
    const { url, facts, clientIp, forward } = viewRequest(request, config, {
      remoteIp: info?.remoteAddr?.hostname ?? "127.0.0.1",
      requestId: observed.requestId,
    });
    const body = new BufferedBody(request, config.bodyLimitBytes);
    const { log } = observed;
    try {
      const match = await findRule(config.rules, facts, body);
      if (!match) {
        throw new HttpError(404, "no_rule", `No rule matches ${request.method} ${url.pathname}`);
      }
      log.rule = match.rule.name;
      log.type = match.rule.type;
      const ctx: RouteContext = {
        request,
        config,
        match,
        pathAndQuery: url.pathname + url.search,
        searchParams: url.searchParams,
        body,
        pin: readPin(request.headers, config),
        assumed: assumeRegion(request.headers, clientIp, config, deps.countryLookup),
        forward,
        now,
        log,
      };
      const { rule } = match;
      switch (rule.type) {
        case "global":
          return await handleGlobal(rule, ctx);
        case "regional":
          return await handleRegional(rule, ctx);
        case "broadcast":
          return await handleBroadcast(rule, ctx);
        default: {
          const unknownRule: never = rule;
          throw new TypeError(`Unknown rule type in ${JSON.stringify(unknownRule)}`);
        }
      }
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        log.error = "body_too_large";
        return errorResponse(
          new HttpError(413, "body_too_large", error.message, { cause: error }),
          request.headers.get("accept"),
        );
      }
      if (error instanceof HttpError) {
        log.error = error.code;
        return errorResponse(error, request.headers.get("accept"));
      }
      throw error;
    }
  }

  app.onError((error, c) => {
    console.error(JSON.stringify({ msg: "unexpected error", error: String(error) }));
    return errorResponse(
      new HttpError(500, "internal_error", "vestibule failed to handle the request"),
      c.req.header("accept") ?? null,
    );
  });
  return app;
}
