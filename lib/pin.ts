/** @module The region pin: which region a browser belongs to, private to the edge. */
import { serialize } from "hono/utils/cookie";
import type { Config } from "./compile_rules.ts";
import { cookieValue } from "./cookies.ts";
import type { HeaderReader } from "./header_list.ts";

/** A pin read from the request, with where it came from (for logs and explain). */
export interface RegionPin {
  region: string;
  source: "pin header" | "pin cookie";
}

/**
 * Reads the pin: the pin header wins over the pin cookie. A value that is not a configured
 * region is ignored, so a stale or forged pin falls back to the assumed region instead of
 * failing the request.
 */
export function readPin(headers: HeaderReader, config: Config): RegionPin | undefined {
  const fromHeader = headers.get(config.pin.header)?.trim().toLowerCase();
  if (fromHeader && config.regions.has(fromHeader)) {
    return { region: fromHeader, source: "pin header" };
  }
  const fromCookie = cookieValue(headers.get("cookie"), config.pin.cookie);
  if (fromCookie && config.regions.has(fromCookie)) {
    return { region: fromCookie, source: "pin cookie" };
  }
  return undefined;
}

/** The `Set-Cookie` value that pins the browser to `region`. */
export function pinCookie(region: string, config: Config): string {
  return serialize(config.pin.cookie, region, {
    path: "/",
    httpOnly: true,
    sameSite: config.pin.sameSite,
    secure: config.pin.secure,
    maxAge: config.pin.maxAgeSeconds,
  });
}
