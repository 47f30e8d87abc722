/**
 * The trusted geo header is the CDN's word on the visitor's country. When it names a country
 * outside `geo.countries`, the visitor gets the default region, not whatever the bundled IP table
 * guesses; when it names no country (`XX`, `T1`), the IP lookup decides.
 */
import assert from "node:assert/strict";
import { createCountryLookup } from "../lib/geo_ip.ts";
import { startUpstream, startVestibule } from "./_servers.ts";

Deno.test("geo: a trusted header naming an unmapped country is not overridden by the IP lookup", async (t) => {
  // 203.0.113.0/24 → AU in the IP table (numeric ranges, as the dataset stores them).
  const countryLookup = createCountryLookup({
    ipv4NumCsv: "3405803776,3405804031,AU",
    ipv6NumCsv: "",
  });
  const au = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { AU: "au", NZ: "au" }, ip_lookup: true },
    trusted_proxy_hops: 1,
    rules: [{ name: "app", type: "regional" }],
  }, { deps: { countryLookup } });
  const cases: [string, "au" | "us"][] = [
    // The CDN says the visitor is in the US (or France); the whois-based table files the
    // address under AU. The header wins, and US/FR map to no region: the default, us.
    ["US", "us"],
    ["fr", "us"],
    ["nz", "au"],
    // No country the CDN could name: the IP lookup decides.
    ["XX", "au"],
    ["T1", "au"],
    // CLDR's "unknown region", as some CDNs write it, in either case.
    ["ZZ", "au"],
    ["zz", "au"],
    ["AU, US", "au"],
    // Continents (older MaxMind databases): no country either.
    ["EU", "au"],
    ["AP", "au"],
  ];
  try {
    for (const [country, region] of cases) {
      await t.step(`${country} → ${region}`, async () => {
        const before = { au: au.received.length, us: us.received.length };
        const res = await fetch(`${edge.url}/`, {
          headers: { "cf-ipcountry": country, "x-forwarded-for": "203.0.113.50" },
        });
        await res.body?.cancel();
        assert.deepEqual(
          { au: au.received.length - before.au, us: us.received.length - before.us },
          { au: region === "au" ? 1 : 0, us: region === "us" ? 1 : 0 },
          `cf-ipcountry: ${country}`,
        );
      });
    }
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("geo: a code the operator mapped is used even when it names no country", async () => {
  const au = startUpstream();
  const us = startUpstream();
  // Cloudflare's "unknown" sent to au on purpose; the IP table does not know the address.
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { AU: "au", XX: "au" }, ip_lookup: true },
    rules: [{ name: "app", type: "regional" }],
  }, { deps: { countryLookup: () => undefined } });
  try {
    const res = await fetch(`${edge.url}/`, { headers: { "cf-ipcountry": "XX" } });
    await res.body?.cancel();
    assert.equal(au.received.length, 1);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
