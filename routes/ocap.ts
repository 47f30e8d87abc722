/**
 * @module OCAP, the outgoing caching proxy: monoliths send provider calls (e.g. OAuth code
 * redemptions) to `<path>/<target>/<rest>`; identical calls share one origin request and its
 * answer. See `docs/ocap.md`.
 */
import {
  checkMethod,
  rawTarget,
  refuseBodyOf,
  refuseTransferCodingOf,
} from "../lib/request_view.ts";
import type { RouteLog } from "../lib/route_context.ts";
import type { RulesFile } from "../lib/rules_schema.ts";
import { parseOrigin } from "../lib/compile_rules.ts";
import { errorResponse, HttpError } from "../lib/http_error.ts";
import { callOrigin, OriginAnswerTooLarge, OriginFailure } from "../lib/ocap/call_origin.ts";
import { dedupKey } from "../lib/ocap/dedup_key.ts";
import { ocapKeyMatches } from "../lib/ocap/key_matches.ts";
import { answerResponse, type OriginAnswer } from "../lib/ocap/origin_answer.ts";
import { originHeaders } from "../lib/ocap/origin_headers.ts";
import { OCAP_KEY_HEADER } from "../lib/forward.ts";
import { SingleFlight } from "../lib/ocap/single_flight.ts";
import { type OcapTarget, resolveTarget } from "../lib/ocap/target_path.ts";
import { BodyTooLargeError, clientClosed, readRequestBody } from "../lib/request_body.ts";

/** The validated `ocap` section of the rules file. */
export type OcapConfig = NonNullable<RulesFile["ocap"]>;

/** What OCAP needs from the outside world. */
export interface OcapDeps {
  /** Shared by every instance that must not call the origin twice. */
  kv: Deno.Kv;
  /** Milliseconds since the epoch; injected so tests can control time. */
  now?: () => number;
  fetch?: typeof fetch;
  /** Vestibule's pin header and cookie, never forwarded to a provider. */
  pin?: { header: string; cookie: string };
  /** Largest request body accepted (default 1 MiB); larger is 413 `body_too_large`. */
  bodyLimitBytes?: number;
  /** How long the request body may take to arrive (default 30 s); later is 408 `body_timeout`. */
  bodyTimeoutMs?: number;
  /** Told how each answered request was served (for the hit/miss/coalesced metrics). */
  onCache?: (result: "hit" | "miss" | "coalesced") => void;
}

const DEFAULT_PIN = { header: "x-vestibule-region", cookie: "__Host-vestibule-region" };

/** Builds the OCAP handler for one isolate; mount it at `<path>/*`. */
export function createOcapHandler(
  ocap: OcapConfig,
  deps: OcapDeps,
): (request: Request, log?: RouteLog, requestId?: string) => Promise<Response> {
  const targets = compileTargets(ocap);
  const flights = new SingleFlight(deps.kv, { now: deps.now });
  const fetchOrigin = deps.fetch ?? fetch;
  const pin = deps.pin ?? DEFAULT_PIN;
  const bodyLimit = deps.bodyLimitBytes ?? 1_048_576;
  const bodyTimeoutMs = deps.bodyTimeoutMs ?? 30_000;

  return async (request, log, requestId) => {
    try {
      if (!ocapKeyMatches(request.headers.get(OCAP_KEY_HEADER), ocap.key)) {
        throw new HttpError(401, "ocap_unauthorized", "Missing or wrong Ocap-Key header");
      }
      // The raw request target, before URL parsing could resolve dot segments.
      const { target, url } = resolveTarget(rawTarget(request.url), ocap.path, targets);
      // The access line and the upstream error metrics name the target, as they name a region.
      if (log) log.upstream = target.name;
      // Refused as the router refuses it: `fetch` would send a lower-case `head` as a HEAD (the
      // caller then got a length and no body), and refuse TRACE as if the provider were down.
      const { method } = request;
      checkMethod(method);
      // As the router refuses it: sent without its body, the provider would answer (and OCAP
      // cache) another request than the caller's.
      refuseBodyOf(method, request.headers);
      // Nor with a coding only the provider would have to take off (and OCAP key by).
      refuseTransferCodingOf(request.headers);
      let body: Uint8Array<ArrayBuffer>;
      try {
        // Refuses a body its HTTP/2 caller cut off, which Deno.serve ends as if whole.
        body = await readRequestBody(request, bodyLimit, bodyTimeoutMs);
      } catch (error) {
        if (error instanceof BodyTooLargeError) {
          throw new HttpError(413, "body_too_large", error.message, { cause: error });
        }
        if (error instanceof HttpError) throw error; // 408 body_timeout
        // The caller hung up mid-upload: logged as the router logs it, not as a 500.
        throw clientClosed(error);
      }
      const key = await dedupKey({
        method,
        url,
        contentType: request.headers.get("content-type"),
        body,
        authorization: request.headers.get("authorization"),
        headers: request.headers,
      });
      const headers = originHeaders(request.headers, pin, requestId);
      const hasBody = body.byteLength > 0 || (method !== "GET" && method !== "HEAD");
      const { answer, cache } = await flights.run(key, {
        ttlMs: target.ttlMs,
        timeoutMs: target.timeoutMs,
        callOrigin: async (signal) =>
          onMount(
            await callOrigin(
              { target: target.name, url, method, headers, body: hasBody ? body : null },
              { fetch: fetchOrigin, signal, timeoutMs: target.timeoutMs },
            ),
            url,
            `${ocap.path}/${target.name}`,
          ),
      });
      deps.onCache?.(cache);
      if (log) log.outcome = cache;
      if (log && answer.error) log.error = answer.error;
      return answerResponse(answer, cache, method);
    } catch (error) {
      // Thrown to the caller whose request went to the origin: a miss, whatever came of it.
      if (error instanceof OriginFailure || error instanceof OriginAnswerTooLarge) {
        deps.onCache?.("miss");
        if (log) log.outcome = "miss";
      }
      if (error instanceof HttpError) {
        if (log) log.error = error.code;
        return errorResponse(error, request.headers.get("accept"), request.method);
      }
      throw error;
    }
  };
}

/**
 * The answer with a `Location` on the target's own origin moved under the mount, as nginx's
 * `proxy_redirect default` does: resolved against the edge's URL, `/v2/token` would leave OCAP
 * for the rule table (and a regional monolith), and an absolute one would skip OCAP's sharing.
 */
function onMount(answer: OriginAnswer, called: URL, mount: string): OriginAnswer {
  const headers = answer.headers.map(([name, value]): [string, string] => {
    if (name !== "location") return [name, value];
    const to = URL.parse(value, called);
    return to?.origin === called.origin
      ? [name, `${mount}${to.pathname}${to.search}${to.hash}`]
      : [name, value];
  });
  return { ...answer, headers };
}

function compileTargets(ocap: OcapConfig): Map<string, OcapTarget> {
  const targets = new Map<string, OcapTarget>();
  for (const [name, input] of Object.entries(ocap.targets)) {
    const parsed = parseOrigin(input.origin);
    if (typeof parsed === "string") {
      throw new TypeError(`Cannot compile ocap.targets.${name}.origin: ${parsed}`);
    }
    targets.set(name, {
      name,
      origin: parsed.origin,
      ttlMs: (input.ttl_seconds ?? ocap.ttl_seconds) * 1000,
      timeoutMs: input.timeout_ms,
    });
  }
  return targets;
}
