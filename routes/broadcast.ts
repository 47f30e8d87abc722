/** @module `broadcast` rules: ask every region at once, return the owner's answer and pin to it. */
import {
  type BroadcastOutcome,
  chooseOutcome,
  type RegionResult,
} from "../lib/broadcast_outcome.ts";
import type { BroadcastRule } from "../lib/compile_rules.ts";
import { clientResponse, sendUpstream, upstreamHeaders } from "../lib/forward.ts";
import { HttpError } from "../lib/http_error.ts";
import { pinCookie } from "../lib/pin.ts";
import { varyByRegionChoice } from "../lib/region_vary.ts";
import { cookieScope, type RouteContext, withSetCookie } from "../lib/route_context.ts";
import { checkSuccess } from "../lib/success.ts";
import { bufferedBody } from "../lib/unframed_body.ts";

interface Attempt {
  region: string;
  abort: AbortController;
  /** Settles with the region's result; never rejects. */
  done: Promise<{ result: RegionResult; response?: Response }>;
}

/**
 * Reads the body once and replays the same bytes to every region concurrently, so the answer
 * takes as long as the slowest region (or its timeout), not the sum. Answers the client never
 * gets are cancelled, so no connection or body is left behind.
 */
export async function handleBroadcast(rule: BroadcastRule, ctx: RouteContext): Promise<Response> {
  const { request, config } = ctx;
  const body = request.method === "GET" || request.method === "HEAD"
    ? null
    : bufferedBody(await ctx.body.bytes(), ctx.headers);
  const preferred = ctx.pin?.region ?? ctx.assumed.region;
  const preference = [preferred, ...config.regionIds.filter((id) => id !== preferred)];
  // Regions that have answered (or failed) on their own so far, awaited or not.
  const finished = new Map<string, RegionResult>();
  const outWhenClientLeft = new Set<string>();
  const onClientGone = () => {
    for (const a of attempts) if (!finished.has(a.region)) outWhenClientLeft.add(a.region);
    attempts.forEach((a) => a.abort.abort(request.signal.reason));
  };
  request.signal.addEventListener("abort", onClientGone, { once: true });

  const attempts: Attempt[] = config.regionIds.map((region) => {
    const abort = new AbortController();
    const done = attempt(rule, ctx, region, body, abort.signal);
    done.then((e) => finished.set(region, e.result), () => {});
    return { region, abort, done };
  });

  let winner: { region: string; response: Response } | undefined;
  let outcome: BroadcastOutcome;
  const settled = new Map<string, { result: RegionResult; response?: Response }>();
  try {
    if (rule.allowMultipleSuccess) {
      // Answer as soon as the most preferred region that can still succeed has succeeded.
      for (const region of preference) {
        const entry = await attempts.find((a) => a.region === region)!.done;
        settled.set(region, entry);
        if (entry.result.kind === "response" && entry.result.success) break;
      }
    } else {
      for (const a of attempts) settled.set(a.region, await a.done);
    }
    const known = [...settled.values()].map((e) => e.result);
    outcome = chooseOutcome(known, preference, rule.allowMultipleSuccess);
    if (outcome.kind === "success" || outcome.kind === "failure") {
      winner = { region: outcome.region, response: settled.get(outcome.region)!.response! };
    }
  } finally {
    request.signal.removeEventListener("abort", onClientGone);
  }

  // A client that hung up gets nothing: every region is aborted or cancelled, and the line says 499.
  const clientGone = request.signal.aborted;
  if (clientGone) winner = undefined;
  // Everything the client does not get is aborted (still running) or cancelled (answered).
  for (const a of attempts) {
    if (a.region === winner?.region) continue;
    a.abort.abort();
    a.done.then((e) => e.response?.body?.cancel().catch(() => {}));
  }

  ctx.log.regionReason = "broadcast";
  ctx.log.regions = config.regionIds.map((region) => {
    // With allow_multiple_success a region may have answered without being awaited.
    const r = settled.get(region)?.result ?? finished.get(region);
    // A region still out when the client left was aborted by that, not by its own fault.
    if (!r || (r.kind === "unavailable" && outWhenClientLeft.has(region))) {
      return { region, error: clientGone ? "client_closed" : "not_awaited", ms: r?.ms ?? 0 };
    }
    return r.kind === "response"
      ? { region, status: r.status, ms: r.ms }
      : { region, error: r.kind, ms: r.ms };
  });
  if (clientGone) {
    throw new HttpError(499, "client_closed", "The client went away before the regions answered");
  }
  ctx.log.outcome = outcome.kind;

  switch (outcome.kind) {
    case "success":
      ctx.log.region = outcome.region;
      // With allow_multiple_success, the pin or assumed region picks among successes.
      return varyByRegionChoice(
        withSetCookie(winner!.response, pinCookie(outcome.region, config)),
        request.method,
        config,
        rule.chosenBy,
        ctx.headers,
      );
    case "failure":
      ctx.log.region = outcome.region;
      // The best failure is the pinned or assumed region's (`preference` order).
      return varyByRegionChoice(
        winner!.response,
        request.method,
        config,
        rule.chosenBy,
        ctx.headers,
      );
    case "ambiguous":
      throw new HttpError(
        502,
        "broadcast_ambiguous",
        `More than one region answered with success: ${
          outcome.regions.map((r) => `"${r}"`).join(", ")
        }`,
      );
    case "unavailable":
      throw outcome.allTimedOut
        ? new HttpError(504, "upstream_timeout", "No region answered in time")
        : new HttpError(502, "broadcast_unavailable", "No region could be reached");
  }
}

async function attempt(
  rule: BroadcastRule,
  ctx: RouteContext,
  region: string,
  body: Uint8Array<ArrayBuffer> | null,
  signal: AbortSignal,
): Promise<{ result: RegionResult; response?: Response }> {
  const upstream = ctx.config.regions.get(region)!;
  const { headers, ...asked } = upstreamHeaders(
    ctx.headers,
    upstream,
    { only: rule.forwardCookies },
    ctx.forward,
  );
  const started = performance.now();
  const timeoutMs = rule.timeoutMs ?? upstream.timeoutMs;
  try {
    const raw = await sendUpstream(upstream, ctx.pathAndQuery, {
      method: ctx.request.method,
      headers,
      body,
      signal,
      timeoutMs,
    });
    const headersMs = performance.now() - started; // what the upstream duration histogram counts
    const response = clientResponse(raw, upstream, ctx.forward, asked);
    // A region that stalls in the middle of a body its success rule reads times out as one that
    // never answers: the whole attempt, headers and body, fits in the timeout.
    const options = {
      now: ctx.now(),
      cookieScope: cookieScope(ctx),
      bodyLimit: ctx.config.bodyLimitBytes,
      deadline: started + timeoutMs,
    };
    const verdict = await checkSuccess(rule.success, response, options);
    const preferred = !verdict.success && rule.preferFailure
      ? await checkSuccess(rule.preferFailure, verdict.response, options)
      : undefined;
    return {
      result: {
        region,
        kind: "response",
        status: verdict.response.status,
        success: verdict.success,
        preferred: preferred?.success ?? false,
        ms: headersMs,
      },
      response: preferred?.response ?? verdict.response,
    };
  } catch (error) {
    const code = error instanceof HttpError ? error.code : undefined;
    const kind = code === "upstream_timeout"
      ? "timeout"
      : code === "upstream_invalid"
      ? "invalid"
      : "unavailable";
    return { result: { region, kind, ms: performance.now() - started } };
  }
}
