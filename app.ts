/** @module Builds the vestibule HTTP app from its dependencies; `main.ts` wires the real ones. */
import { Hono } from "hono";
import type { CountryLookup } from "./lib/assume_region.ts";
import { assumeRegion } from "./lib/assume_region.ts";
import type { Config } from "./lib/compile_rules.ts";
import { errorResponse, HttpError } from "./lib/http_error.ts";
import { findRule } from "./lib/match_rule.ts";
import { checkMethodOverride } from "./lib/method_override.ts";
import { VestibuleMetrics } from "./lib/metrics.ts";
import { metricsResponse } from "./lib/metrics_endpoint.ts";
import { WorkerMetrics } from "./lib/worker_metrics.ts";
import { createObserver, type Observed, UNOBSERVED } from "./lib/observe.ts";
import { OWN_PREFIX, routedPath, servedBy } from "./lib/own_paths.ts";
import { readPin } from "./lib/pin.ts";
import { hostHeaderFits, rawQuery, rawTarget, viewRequest } from "./lib/request_view.ts";
import { matchablePath } from "./lib/matchable_path.ts";
import { requestUrl } from "./lib/request_path.ts";
import { BodyTooLargeError, BufferedBody } from "./lib/request_body.ts";
import type { RouteContext } from "./lib/route_context.ts";
import { handleBroadcast } from "./routes/broadcast.ts";
import { handleGlobal } from "./routes/global.ts";
import { createOcapHandler } from "./routes/ocap.ts";
import { handleRegional } from "./routes/regional.ts";
import { RelayBudget } from "./lib/websocket_proxy.ts";

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
  /**
   * A `BroadcastChannel` name: the workers of `deno serve --parallel` meet on it, so a scrape of
   * any one of them shows the counts of all. Unset, a scrape shows this app's own.
   */
  metricsChannel?: string;
  /**
   * `false` turns off the access log, metrics and span attributes (benchmarks); request ids
   * still go upstream.
   */
  observe?: boolean;
  /**
   * What the WebSocket relays may queue together for peers that do not read; default
   * `RELAY_BUDGET_BYTES` (256 MiB) for this app.
   */
  webSocketBudget?: RelayBudget;
  /**
   * The scheme clients reach this listener with, sent upstream as `X-Forwarded-Proto` unless
   * trusted proxies report one; default `http`. (`request.url`'s is the client's word for an
   * absolute-form request target.)
   */
  scheme?: "http" | "https";
}

type ServeInfo = Partial<Deno.ServeHandlerInfo>;
type Env = { Bindings: ServeInfo };

/** The built app: what `Deno.serve` and `deno serve` call. */
export interface App {
  fetch(request: Request, info?: ServeInfo): Response | Promise<Response>;
}

/** Builds the app. Serve it with `Deno.serve(app.fetch)` so handlers see the client address. */
const HEALTH_BODY = JSON.stringify({ status: "ok" });

export function createApp(deps: AppDeps): App {
  const { config } = deps;
  const now = deps.now ?? Date.now;
  const scheme = deps.scheme ?? "http";
  // Hono routes vestibule's own paths by the path that decided they are its own.
  const app = new Hono<Env>({ getPath: (request) => pathOf(request) });

  // Its length stated: Hono answers a HEAD (a load balancer's check) from these headers with a
  // null body, for which Deno.serve would write Content-Length: 0.
  app.get("/_vestibule/health", () =>
    new Response(HEALTH_BODY, {
      headers: { "content-type": "application/json", "content-length": String(HEALTH_BODY.length) },
    }));
  const metrics = new VestibuleMetrics();
  const onWebSocketOverloaded = (upstream: string) => metrics.webSocketOverloaded(upstream);
  const webSocketBudget = deps.webSocketBudget ?? new RelayBudget();
  const scraped = deps.metricsChannel
    ? new WorkerMetrics(metrics, { channel: deps.metricsChannel })
    : metrics;
  const observe = deps.observe === false ? UNOBSERVED : createObserver({
    log: deps.log ?? console.log,
    metrics,
    now,
    serverTiming: config.serverTiming,
    debugHeaders: config.debugHeaders,
    trustedProxyHops: config.trustedProxyHops,
  });
  app.get("/_vestibule/metrics", async (c) => {
    const answer = await metricsResponse(c.req.raw, { metrics: scraped, token: deps.metricsToken });
    if (answer.ok) return answer; // a scrape: no access line, no count
    // A refused one is logged and counted, as a scan of the prefix is: a token being guessed shows.
    return observe(c.req.raw, c.req.path, ({ log }) => {
      log.error = answer.status === 401 ? "unauthorized" : "not_found";
      return Promise.resolve(answer);
    });
  });
  let ocapRoute: ((request: Request, path: string) => Promise<Response>) | undefined;
  if (config.ocap) {
    if (!deps.kv) throw new TypeError("Cannot mount OCAP: createApp() needs a kv store");
    const { pin, bodyLimitBytes, bodyTimeoutMs } = config;
    const ocap = createOcapHandler(config.ocap, {
      kv: deps.kv,
      now,
      pin,
      bodyLimitBytes,
      bodyTimeoutMs,
      onCache: (result) => metrics.ocapCache(result),
    });
    // Called directly, not through Hono, which answers a HEAD from the GET's headers with a null
    // body (written as Content-Length: 0, where the provider's GET has another length or none).
    ocapRoute = (request, path) =>
      observe(request, path, ({ log, requestId }) => ocap(request, log, requestId));
  }
  // Nothing under vestibule's own prefix reaches an upstream, whatever the method; each such
  // request is logged and counted, so a scan of the prefix shows.
  app.all(`${OWN_PREFIX}*`, (c) =>
    observe(c.req.raw, c.req.path, ({ log }) => {
      log.error = "not_found";
      return Promise.resolve(errorResponse(
        new HttpError(404, "not_found", "No such vestibule endpoint"),
        c.req.header("accept") ?? null,
        c.req.method,
      ));
    }));

  app.all("*", (c) => routeRequest(c.req.raw, c.req.path, undefined, c.env));

  function routeRequest(
    request: Request,
    path: string,
    url: URL | undefined,
    info: ServeInfo | undefined,
  ) {
    return observe(request, path, (observed) => route(request, url, observed, info));
  }

  /** Sorts one request by the rule table and hands it to the rule type's processor. */
  async function route(
    request: Request,
    parsedUrl: URL | undefined,
    observed: Observed,
    info: ServeInfo | undefined,
  ): Promise<Response> {
    const body = new BufferedBody(request, config.bodyLimitBytes, config.bodyTimeoutMs);
    const { log } = observed;
    try {
      const { url, headers, facts, clientIp, forward } = viewRequest(request, config, {
        remoteIp: remoteHost(info?.remoteAddr),
        requestId: observed.requestId,
        scheme,
        url: parsedUrl,
      });
      log.host = forward.publicHost;
      const match = await findRule(config.rules, facts, body);
      if (!match) {
        // A HEAD's answer has its GET's length, so its message names GET.
        const method = request.method === "HEAD" ? "GET" : request.method;
        throw new HttpError(404, "no_rule", `No rule matches ${method} ${url.pathname}`);
      }
      log.rule = match.rule.name;
      log.type = match.rule.type;
      // Only a POST can carry one; every other request goes on without another await.
      if (facts.method === "POST") await checkMethodOverride(config, facts, body, match.rule);
      const ctx: RouteContext = {
        request,
        config,
        match,
        // `URL.search` reads an empty query (`/callback?`) as none; the raw one keeps its `?`.
        pathAndQuery: url.pathname + (url.search || rawQuery(request.url)),
        searchParams: facts.searchParams,
        body,
        headers,
        pin: readPin(headers, config),
        assumed: assumeRegion(headers, clientIp, config, deps.countryLookup),
        forward,
        now,
        log,
        onWebSocketOverloaded,
        webSocketBudget,
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
          request.method,
        );
      }
      if (error instanceof HttpError) {
        log.error = error.code;
        const response = errorResponse(error, request.headers.get("accept"), request.method);
        // Tells the vestibule that sent this copy round that the loop is its own.
        if (error.code === "loop_detected") response.headers.set("via", config.via.entry);
        return response;
      }
      throw error;
    }
  }

  app.onError((error, c) => internalError(error, c.req.raw));

  // Every path outside `/_vestibule/` and the OCAP mount reaches `routeRequest` in Hono too;
  // calling it directly skips Hono's per-request context, about 5 % of regional requests/s in
  // one alternating load run.
  const ocapPath = config.ocap?.path;
  return {
    fetch(request, info) {
      const url = requestUrl(request.url);
      const path = pathOf(request, url);
      const own = servedBy(path, ocapPath);
      if (own && hostHeaderFits(request.headers.get("host"))) {
        if (own === "ocap" && ocapRoute) {
          return ocapRoute(request, path).catch((error) => internalError(error, request));
        }
        return app.fetch(request, info);
      }
      return routeRequest(request, path, url, info).catch((error) => internalError(error, request));
    },
  };
}

/**
 * {@linkcode routedPath}; for a URL that does not parse (a 400 `bad_host` to come), the raw path
 * with its escapes kept as `routedPath` keeps them.
 */
function pathOf(request: Request, url = requestUrl(request.url)): string {
  return url ? routedPath(url) : matchablePath(rawTarget(request.url).replace(/[?#].*/s, ""));
}

/** The peer's IP; a Unix socket (or no address at all) counts as loopback. */
function remoteHost(addr: Deno.Addr | undefined): string {
  return addr && "hostname" in addr ? addr.hostname : "127.0.0.1";
}

/** The answer when vestibule itself fails: logged without request details, a 500 to the client. */
function internalError(error: unknown, request: Request): Response {
  console.error(JSON.stringify({ msg: "unexpected error", error: String(error) }));
  return errorResponse(
    new HttpError(500, "internal_error", "vestibule failed to handle the request"),
    request.headers.get("accept"),
    request.method,
  );
}
