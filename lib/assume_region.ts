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
 * A country code a CDN can mean: two letters, but not `XX` (Cloudflare's "unknown") or `ZZ`
 * (CLDR's); `T1` (Tor), a joined duplicate header (`AU, US`) and other values name none.
 */
const COUNTRY_CODE = /^(?!XX$|ZZ$)[A-Z]{2}$/;

/**
 * The trusted geo header (set by a CDN) wins when it names a country: that country's region, or
 * `default_region` for a country outside `geo.countries` (the CDN knows better than a whois-based
 * table). Without one, the IP lookup when enabled; then `default_region`.
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
    if (country && COUNTRY_CODE.test(country)) {
      const region = geo.countries.get(country);
      return region
        ? { region, reason: "geo header", country }
        : { region: config.defaultRegion, reason: "default", country };
    }
  }
  if (geo.ipLookup && lookup) {
    const country = lookup(clientIp);
    const region = country ? geo.countries.get(country) : undefined;
    if (region) return { region, reason: "geo ip", country };
  }
  return { region: config.defaultRegion, reason: "default" };
}
