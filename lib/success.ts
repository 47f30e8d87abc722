/** @module Decides whether an upstream answer matches a success rule (broadcast, `pin_on`). */
import type { SuccessRule } from "./compile_rules.ts";
import { deepEqual } from "./match_rule.ts";
import { readBounded } from "./request_body.ts";

/** The verdict, and the response to use from now on (rebuilt when its body had to be read). */
export interface SuccessVerdict {
  success: boolean;
  response: Response;
}

/**
 * Cheap checks (status, cookies, headers) run first; the body is read only for a `json` check,
 * bounded by `bodyLimit`, and the response is rebuilt from the same bytes so the client still
 * gets it intact. A body that is not JSON (or too large) is simply not a success.
 */
export async function checkSuccess(
  rule: SuccessRule,
  response: Response,
  options: { now: number; bodyLimit: number },
): Promise<SuccessVerdict> {
  if (!matchesWithoutBody(rule, response, options.now)) return { success: false, response };
  if (!rule.json) return { success: true, response };
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await readBounded(
      response.body,
      options.bodyLimit,
      response.headers.get("content-length"),
    );
  } catch {
    return { success: false, response: new Response(null, response) };
  }
  // 101/103/204/205/304 must not carry a body, even an empty one.
  const nullBody = [101, 103, 204, 205, 304].includes(response.status);
  const rebuilt = new Response(nullBody ? null : bytes, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return { success: false, response: rebuilt };
  }
  const { path, hasEquals, equals, exists } = rule.json;
  const found = lookupPath(parsed, path);
  const success = hasEquals
    ? found.present && deepEqual(found.value, equals)
    : found.present === exists;
  return { success, response: rebuilt };
}

/** The status, `Set-Cookie` and header parts of a success rule. */
export function matchesWithoutBody(rule: SuccessRule, response: Response, now: number): boolean {
  if (rule.status) {
    const ok = rule.status instanceof Set
      ? rule.status.has(response.status)
      : Math.floor(response.status / 100) === (rule.status as { class: number }).class;
    if (!ok) return false;
  }
  if (rule.setCookie && !setsLiveCookie(response.headers.getSetCookie(), rule.setCookie, now)) {
    return false;
  }
  if (rule.headers) {
    for (const [name, regex] of rule.headers) {
      const value = response.headers.get(name);
      if (value === null || !regex.test(value)) return false;
    }
  }
  return true;
}

/**
 * Whether one of the `Set-Cookie` values sets `name` to a non-empty value that is not already
 * expired: a logout answer that clears `sessionid` must not count as a login.
 */
export function setsLiveCookie(setCookies: string[], name: string, now: number): boolean {
  return setCookies.some((line) => {
    const [pair, ...attributes] = line.split(";");
    const eq = pair.indexOf("=");
    if (eq === -1 || pair.slice(0, eq).trim() !== name) return false;
    const value = pair.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    if (value === "") return false;
    let maxAge: number | undefined;
    let expires: number | undefined;
    for (const attribute of attributes) {
      const [key, ...rest] = attribute.split("=");
      const attrValue = rest.join("=").trim();
      const name = key.trim().toLowerCase();
      if (name === "max-age" && /^-?\d+$/.test(attrValue)) maxAge = Number(attrValue);
      if (name === "expires" && !Number.isNaN(Date.parse(attrValue))) {
        expires = Date.parse(attrValue);
      }
    }
    // RFC 6265 §5.3 step 3: Max-Age wins over Expires.
    if (maxAge !== undefined) return maxAge > 0;
    return expires === undefined || expires > now;
  });
}

/** Follows a dotted path (`data.signup.ok`, `errors.0.message`) into a JSON value. */
export function lookupPath(
  value: unknown,
  path: readonly string[],
): { present: boolean; value?: unknown } {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== "object" || !Object.hasOwn(current, key)) {
      return { present: false };
    }
    current = (current as Record<string, unknown>)[key];
  }
  return { present: true, value: current };
}
