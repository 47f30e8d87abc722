/** @module Benchmarks for the offline IP→country lookup: cost per lookup and cost of a full load. */
import { createCountryLookup, loadCountryLookup } from "../lib/geo_ip.ts";

const lookup = await loadCountryLookup();

// Addresses spread over the tables, so each call walks a different search path.
const IPV4 = ["1.0.0.1", "8.8.8.8", "13.54.0.1", "17.67.232.7", "81.2.69.160", "203.2.218.214"];
const IPV6 = [
  "2001:218:2000:52::1",
  "2001:4860:4860::8888",
  "2405:2000:2502:10::2",
  "2606:4700:4700::1111",
  "2a00:1450:4009:81f::200e",
  "2c0f:e9a0:1002::1",
];
const MAPPED = IPV4.map((ip) => "::ffff:" + ip);
const INVALID = ["", "not an address", "1.2.3", "1::2::3", "999.1.1.1", "fe80::1%eth0"];

function cycle(addresses: string[]): () => void {
  let i = 0;
  let sink = 0;
  return () => {
    const country = lookup(addresses[i]);
    i = (i + 1) % addresses.length;
    // Use the answer so the call cannot be optimised away.
    if (country !== undefined) sink += country.length;
    if (sink < 0) throw new RangeError("Unreachable");
  };
}

Deno.bench("lookup() of an IPv4 address", { group: "lookup", baseline: true }, cycle(IPV4));
Deno.bench("lookup() of an IPv6 address", { group: "lookup" }, cycle(IPV6));
Deno.bench("lookup() of an IPv4-mapped IPv6 address", { group: "lookup" }, cycle(MAPPED));
Deno.bench("lookup() of a malformed address", { group: "lookup" }, cycle(INVALID));

const [ipv4, ipv6] = await Promise.all([
  import("@ip-location-db/geo-whois-asn-country/geo-whois-asn-country-ipv4-num.csv", {
    with: { type: "text" },
  }),
  import("@ip-location-db/geo-whois-asn-country/geo-whois-asn-country-ipv6-num.csv", {
    with: { type: "text" },
  }),
]);

Deno.bench("createCountryLookup() of the whole dataset", { n: 10, warmup: 1 }, () => {
  createCountryLookup({ ipv4NumCsv: ipv4.default, ipv6NumCsv: ipv6.default });
});
