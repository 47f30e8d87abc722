/** @module Picks the one answer a broadcast returns: the owner's success, or the best failure. */

/** What one region did with a broadcast request. */
export type RegionResult =
  | {
    region: string;
    kind: "response";
    status: number;
    success: boolean;
    /** Matches the rule's `prefer_failure`. */
    preferred?: boolean;
    ms: number;
  }
  /** `invalid`: it answered, but with nothing a client can be handed (`upstream_invalid`). */
  | { region: string; kind: "timeout" | "unavailable" | "invalid"; ms: number };

/** The decision over all regions' results. */
export type BroadcastOutcome =
  | { kind: "success"; region: string }
  | { kind: "ambiguous"; regions: string[] }
  | { kind: "failure"; region: string }
  | { kind: "unavailable"; allTimedOut: boolean };

/**
 * Exactly one success wins. More than one is an error unless `allowMultiple`, then the first in
 * `preference` order wins. With none, the best failure: a non-5xx beats a 5xx, then a failure
 * matching `prefer_failure` beats one that does not, then `preference` order (assumed region
 * first, then region order). With no response at all, unavailable.
 */
export function chooseOutcome(
  results: readonly RegionResult[],
  preference: readonly string[],
  allowMultiple: boolean,
): BroadcastOutcome {
  const rank = (region: string) => {
    const i = preference.indexOf(region);
    return i === -1 ? preference.length : i;
  };
  const responses = results.filter((r) => r.kind === "response");
  const successes = responses.filter((r) => r.success).sort((a, b) =>
    rank(a.region) - rank(b.region)
  );
  if (successes.length === 1 || (successes.length > 1 && allowMultiple)) {
    return { kind: "success", region: successes[0].region };
  }
  if (successes.length > 1) return { kind: "ambiguous", regions: successes.map((s) => s.region) };
  if (responses.length > 0) {
    const best = [...responses].sort((a, b) =>
      Number(a.status >= 500) - Number(b.status >= 500) ||
      Number(!a.preferred) - Number(!b.preferred) ||
      rank(a.region) - rank(b.region)
    )[0];
    return { kind: "failure", region: best.region };
  }
  return { kind: "unavailable", allTimedOut: results.every((r) => r.kind === "timeout") };
}
