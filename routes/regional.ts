/** @module `regional` rules: one region, chosen by the request, the pin, or an assumption. */
import type { RegionalRule, SuccessRule } from "../lib/compile_rules.ts";
import { chooseRegion, pinnedOrAssumed, regionalCookies } from "../lib/choose_region.ts";
import { pinCookie } from "../lib/pin.ts";
import { varyByRegionChoice } from "../lib/region_vary.ts";
import { cookieScope, forwardTo, type RouteContext, withSetCookie } from "../lib/route_context.ts";
import { checkSuccess } from "../lib/success.ts";
import { clientClosed } from "../lib/request_body.ts";

/**
 * Forwards to the chosen region with the cookies {@linkcode regionalCookies} allows, and pins
 * the browser only when the request named the region (`region_from`) and `pin_on` matches the
 * answer: a region that was assumed, or kept from the pin because the request named no known
 * region, is never pinned.
 */
export function handleRegional(rule: RegionalRule, ctx: RouteContext): Promise<Response> {
  // Only `region_from` may need the body; every other request is decided without waiting.
  if (rule.regionFrom) {
    return chooseRegion(rule, { ...ctx, method: ctx.request.method })
      .then((choice) => toRegion(rule, ctx, choice));
  }
  return toRegion(rule, ctx, pinnedOrAssumed(ctx));
}

function toRegion(
  rule: RegionalRule,
  ctx: RouteContext,
  { region, reason }: { region: string; reason: string },
): Promise<Response> {
  ctx.log.region = region;
  ctx.log.regionReason = reason;
  const upstream = ctx.config.regions.get(region)!;
  const cookies = regionalCookies(region, ctx.pin, ctx.config);
  const { timeoutMs } = rule;
  const vary = (response: Response) =>
    varyByRegionChoice(
      response,
      ctx.request.method,
      ctx.config,
      rule.chosenBy,
      ctx.headers,
    );
  if (!rule.pinOn || reason !== "region_from") {
    return forwardTo(ctx, upstream, cookies, timeoutMs).then(vary);
  }
  // The timeout also covers a body `pin_on` must read before the client gets anything.
  const deadline = performance.now() + (timeoutMs ?? upstream.timeoutMs);
  return withClient(ctx.request.signal, (signal) => {
    const answer = forwardTo(ctx, upstream, cookies, timeoutMs, signal);
    return pinOnSuccess(rule.pinOn!, region, answer, deadline, ctx);
  }).then(vary);
}

/**
 * Runs `call` with a signal that fires when the client leaves, and turns what the client's
 * leaving broke into 499 `client_closed`: while `pin_on` reads the answer's body, the client has
 * nothing yet and `sendUpstream` watches it no longer, so the region call ran on to its timeout
 * and was logged as the region's 504. (Only `pin_on` rules pay for the client's signal.)
 */
async function withClient(
  client: AbortSignal,
  call: (signal: AbortSignal) => Promise<Response>,
): Promise<Response> {
  const left = new AbortController();
  const onGone = () => left.abort(client.reason);
  client.addEventListener("abort", onGone, { once: true });
  try {
    return await call(left.signal);
  } catch (error) {
    if (client.aborted) throw clientClosed(error);
    throw error;
  } finally {
    client.removeEventListener("abort", onGone);
  }
}

/** Pins the browser to `region` when the answer matches the rule's `pin_on`. */
async function pinOnSuccess(
  pinOn: SuccessRule,
  region: string,
  answer: Promise<Response>,
  deadline: number,
  ctx: RouteContext,
): Promise<Response> {
  const verdict = await checkSuccess(pinOn, await answer, {
    cookieScope: cookieScope(ctx),
    now: ctx.now(),
    bodyLimit: ctx.config.bodyLimitBytes,
    deadline,
  });
  if (!verdict.success) return verdict.response;
  ctx.log.outcome = "pinned";
  return withSetCookie(verdict.response, pinCookie(region, ctx.config));
}
