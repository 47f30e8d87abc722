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
 * A code that names a country: two letters, but not `XX` (Cloudflare's "unknown"), `ZZ` (CLDR's)
 * or `EU` and `AP` (the continents older MaxMind databases give); `T1` (Tor), `A1`, a joined
 * duplicate header (`AU, US`) and other values name none.
 */
const COUNTRY_CODE = /^(?!XX$|ZZ$|EU$|AP$)[A-Z]{2}$/;

/**
 * The trusted geo header (set by a CDN) wins when `geo.countries` maps its value (any code the
 * operator listed, `XX` too), or when it names a country: then `default_region` for a country
 * outside the map, as the CDN knows better than a whois-based table. Otherwise the IP lookup when
 * enabled; then `default_region`.
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
    if (country && COUNTRY_CODE.test(country)) {
      return { region: config.defaultRegion, reason: "default", country };
    }
  }
  if (geo.ipLookup && lookup) {
    const country = lookup(clientIp);
    const region = country ? geo.countries.get(country) : undefined;
    if (region) return { region, reason: "geo ip", country };
  }
  return { region: config.defaultRegion, reason: "default" };
}
