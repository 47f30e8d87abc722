/** @module Test helpers for OCAP: a rules file with one provider target, and a caller. */

/** The Ocap-Key the test rules expect. */
export const OCAP_KEY = "test-ocap-key-0123456789abcdef";

/** A minimal rules object mounting OCAP with targets `provider` (and `other`, when given). */
export function ocapRules(
  providerUrl: string,
  options: { ttlSeconds?: number; timeoutMs?: number; otherUrl?: string } = {},
): unknown {
  return {
    regions: { us: { origin: "http://127.0.0.1:9" } },
    default_region: "us",
    ocap: {
      key: "${OCAP_KEY}",
      ttl_seconds: options.ttlSeconds ?? 30,
      targets: {
        provider: { origin: providerUrl, timeout_ms: options.timeoutMs ?? 2_000 },
        ...(options.otherUrl ? { other: { origin: options.otherUrl } } : {}),
      },
    },
    rules: [{ name: "everything", type: "regional" }],
  };
}

/** Environment for {@linkcode ocapRules}. */
export const OCAP_ENV = { OCAP_KEY };

/** The token request a monolith would send through OCAP. */
export function tokenRequest(
  base: string,
  init: { body?: string; key?: string | null; path?: string; headers?: HeadersInit } = {},
): Request {
  const headers = new Headers(init.headers);
  if (init.key !== null) headers.set("ocap-key", init.key ?? OCAP_KEY);
  if (!headers.has("content-type")) {
    headers.set("content-type", "application/x-www-form-urlencoded");
  }
  return new Request(`${base}${init.path ?? "/_ocap/provider/token"}`, {
    method: "POST",
    headers,
    body: init.body ?? "grant_type=authorization_code&code=one-time-code",
  });
}

/** Counts how often each `Ocap-Cache` value appears. */
export function tally(values: Array<string | null>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[String(v)] = (out[String(v)] ?? 0) + 1;
  return out;
}
