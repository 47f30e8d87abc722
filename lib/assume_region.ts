/** @module Chooses a region for a request without a pin: geolocation, else the default. */
import type { Config } from "./compile_rules.ts";
import type { HeaderReader } from "./header_list.ts";

/** Client IP → ISO country code, or `undefined` when unknown. */
export type CountryLookup = (ip: string) => string | undefined;

/** The assumed region and why it was chosen. */
export interface AssumedRegion {
  region: string;
  reason: "geo header" | "geo ip" | "default";
  country?: string;
}

/**
 * The trusted geo header (set by a CDN) wins; then the IP lookup when enabled; then
 * `default_region`. A country outside `geo.countries` also gets the default.
 */
export function assumeRegion(
  headers: HeaderReader,
  clientIp: string,
  config: Config,
  lookup?: CountryLookup,
): AssumedRegion {
  const { geo } = config;
  if (geo.header) {
    const country = headers.get(geo.header)?.trim().toUpperCase();
    const region = country ? geo.countries.get(country) : undefined;
    if (region) return { region, reason: "geo header", country };
  }
  if (geo.ipLookup && lookup) {
    const country = lookup(clientIp);
    const region = country ? geo.countries.get(country) : undefined;
    if (region) return { region, reason: "geo ip", country };
  }
  return { region: config.defaultRegion, reason: "default" };
}
