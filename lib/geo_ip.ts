/** @module Offline client IP → ISO 3166-1 alpha-2 country lookup for `"geo": { "ip_lookup": true }`. */
import { DIGIT_0, MAX_ADDRESS_LENGTH, parseIpv4, parseIpv6 } from "./_ip_address.ts";

/** Answers the country code for an IPv4 or IPv6 address, or `undefined` when unknown or invalid. */
export type CountryLookup = (ip: string) => string | undefined;

/** The dataset's rows as shipped: `start,end,CC` per line, both ends inclusive, decimal numbers. */
export interface CountryRanges {
  /** Contents of `geo-whois-asn-country-ipv4-num.csv` or the same format. */
  ipv4NumCsv: string;
  /** Contents of `geo-whois-asn-country-ipv6-num.csv` or the same format. */
  ipv6NumCsv: string;
}

// The data comes from @ip-location-db/geo-whois-asn-country (package.json says CC0-1.0; its
// NRO_LICENSE file says the RIR data is CC BY 4.0 by the NRO, so credit nro.net where it is shown).
// Text imports (stable in Deno 2.9) make the CSVs part of the module graph: no --allow-read and no
// node_modules path, and tools that walk the graph see them through the literal specifiers.
// The module map keeps both strings (~26 MB) for the life of the isolate.
async function importDataset(): Promise<CountryRanges> {
  const [ipv4, ipv6] = await Promise.all([
    import("@ip-location-db/geo-whois-asn-country/geo-whois-asn-country-ipv4-num.csv", {
      with: { type: "text" },
    }),
    import("@ip-location-db/geo-whois-asn-country/geo-whois-asn-country-ipv6-num.csv", {
      with: { type: "text" },
    }),
  ]);
  return { ipv4NumCsv: ipv4.default, ipv6NumCsv: ipv6.default };
}

let loading: Promise<CountryLookup> | undefined;

/**
 * Loads the bundled IP→country dataset once and returns a synchronous lookup.
 * Later calls share the first load; call it at start-up so the first request does not wait.
 */
export function loadCountryLookup(): Promise<CountryLookup> {
  if (loading === undefined) {
    loading = importDataset().then(createCountryLookup);
    // A failed load is not cached, so a later call can try again.
    loading.catch(() => loading = undefined);
  }
  return loading;
}

const NONE = 0;

/** How one address family's numbers are read and stepped: IPv4 fits a double, IPv6 needs bigint. */
interface AddressFamily<K extends number | bigint> {
  name: string;
  zero: K;
  /** One past the last address. */
  spaceEnd: K;
  /** Reads the decimal digits in `text[from, to)`. */
  parse(text: string, from: number, to: number): K;
  next(address: K): K;
}

const IPV4: AddressFamily<number> = {
  name: "IPv4",
  zero: 0,
  spaceEnd: 2 ** 32,
  parse: (text, from, to) => {
    let value = 0;
    for (let i = from; i < to; i++) value = value * 10 + text.charCodeAt(i) - DIGIT_0;
    return value;
  },
  next: (address) => address + 1,
};

const IPV6: AddressFamily<bigint> = {
  name: "IPv6",
  zero: 0n,
  spaceEnd: 1n << 128n,
  parse: (text, from, to) => BigInt(text.slice(from, to)),
  next: (address) => address + 1n,
};

/**
 * Builds a lookup from CSV text in the dataset's numeric format.
 * Where rows overlap, the later row wins: the file lists a container range first and the more
 * specific ranges inside it after (7,528 of the 550,668 rows of version 2.3.2026061719 overlap
 * an earlier row).
 * @throws {SyntaxError} when a line is not `start,end,CC` with `start <= end` inside the address
 * space, or rows are not sorted by start
 */
export function createCountryLookup(ranges: CountryRanges): CountryLookup {
  const codeNames: (string | undefined)[] = [undefined];
  // Index into codeNames by the code's two letters, so no row allocates a string.
  const codeIndex = new Uint16Array(26 * 26);
  const intern = (first: number, second: number): number => {
    const key = (first - UPPER_A) * 26 + second - UPPER_A;
    if (codeIndex[key] === 0) {
      codeIndex[key] = codeNames.push(String.fromCharCode(first, second)) - 1;
    }
    return codeIndex[key];
  };

  const v4 = flattenRanges(parseCsv(ranges.ipv4NumCsv, IPV4, intern), IPV4);
  const v4Starts = Uint32Array.from(v4.starts);
  const v4Codes = Uint16Array.from(v4.codes);

  const v6 = flattenRanges(parseCsv(ranges.ipv6NumCsv, IPV6, intern), IPV6);
  const v6Starts = new Uint32Array(v6.starts.length * 4);
  v6.starts.forEach((start, i) => {
    for (let word = 3; word >= 0; word--) {
      v6Starts[i * 4 + word] = Number(start & 0xffffffffn);
      start >>= 32n;
    }
  });
  const v6Codes = Uint16Array.from(v6.codes);

  // One scratch buffer: lookups are synchronous, so no two can interleave.
  const words = new Uint32Array(4);
  return function lookupCountry(ip: string): string | undefined {
    if (typeof ip !== "string" || ip.length > MAX_ADDRESS_LENGTH) return undefined;
    if (ip.indexOf(":") < 0) {
      const address = parseIpv4(ip, 0, ip.length);
      return address < 0 ? undefined : codeNames[v4Codes[searchIpv4(v4Starts, address)]];
    }
    if (!parseIpv6(ip, words)) return undefined;
    // RFC 4291 §2.5.5.2: ::ffff:0:0/96 carries an IPv4 address (dual-stack sockets report these).
    if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) {
      return codeNames[v4Codes[searchIpv4(v4Starts, words[3])]];
    }
    return codeNames[v6Codes[searchIpv6(v6Starts, words)]];
  };
}

interface Rows<K> {
  starts: K[];
  /** Exclusive ends, so the sweep needs only comparisons. */
  ends: K[];
  codes: number[];
}

function parseCsv<K extends number | bigint>(
  csv: string,
  family: AddressFamily<K>,
  intern: (first: number, second: number) => number,
): Rows<K> {
  const rows: Rows<K> = { starts: [], ends: [], codes: [] };
  let line = 0;
  // A hand-written scanner: a regex with captures per line took most of the load time.
  for (let pos = 0; pos < csv.length;) {
    line++;
    let eol = csv.indexOf("\n", pos);
    if (eol < 0) eol = csv.length;
    const end = eol > pos && csv.charCodeAt(eol - 1) === CARRIAGE_RETURN ? eol - 1 : eol;
    if (end > pos) {
      const comma1 = skipDigits(csv, pos, end);
      const comma2 = skipDigits(csv, comma1 + 1, end);
      const first = csv.charCodeAt(comma2 + 1);
      const second = csv.charCodeAt(comma2 + 2);
      let valid = comma1 > pos && comma1 - pos <= MAX_DIGITS && csv.charCodeAt(comma1) === COMMA &&
        comma2 > comma1 + 1 && comma2 - comma1 - 1 <= MAX_DIGITS &&
        csv.charCodeAt(comma2) === COMMA &&
        end === comma2 + 3 && isUpperLetter(first) && isUpperLetter(second);
      if (valid) {
        const start = family.parse(csv, pos, comma1);
        const last = family.parse(csv, comma1 + 1, comma2);
        valid = start <= last && last < family.spaceEnd;
        rows.starts.push(start);
        rows.ends.push(family.next(last));
        rows.codes.push(intern(first, second));
      }
      if (!valid) {
        throw new SyntaxError(
          `Cannot parse ${family.name} ranges: line ${line} is not "start,end,CC": "${
            csv.slice(pos, end)
          }"`,
        );
      }
    }
    pos = eol + 1;
  }
  return rows;
}

// 2^128 - 1 has 39 decimal digits.
const MAX_DIGITS = 39;
const COMMA = 44;
const CARRIAGE_RETURN = 13;
const UPPER_A = 65;

function skipDigits(text: string, from: number, to: number): number {
  let i = from;
  while (i < to) {
    const code = text.charCodeAt(i);
    if (code < DIGIT_0 || code > DIGIT_0 + 9) break;
    i++;
  }
  return i;
}

function isUpperLetter(code: number): boolean {
  return code >= UPPER_A && code < UPPER_A + 26;
}

/**
 * Turns rows sorted by start, possibly nested or overlapping, into a step function over the whole
 * address space: `codes[i]` holds from `starts[i]` up to `starts[i + 1]`, `NONE` in the gaps.
 */
function flattenRanges<K extends number | bigint>(
  rows: Rows<K>,
  family: AddressFamily<K>,
): { starts: K[]; codes: number[] } {
  const starts: K[] = [family.zero];
  const codes: number[] = [NONE];
  const emit = (start: K, code: number) => {
    const last = starts.length - 1;
    if (starts[last] === start) {
      codes[last] = code;
      if (last > 0 && codes[last - 1] === code) {
        starts.pop();
        codes.pop();
      }
    } else if (codes[last] !== code) {
      starts.push(start);
      codes.push(code);
    }
  };
  // Rows still visible, latest on top; rows hidden below a later one are dropped when reached.
  const stack: number[] = [];
  const advanceTo = (limit: K) => {
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (rows.ends[top] >= limit) return;
      stack.pop();
      while (stack.length > 0 && rows.ends[stack[stack.length - 1]] <= rows.ends[top]) stack.pop();
      emit(rows.ends[top], stack.length > 0 ? rows.codes[stack[stack.length - 1]] : NONE);
    }
  };
  for (let row = 0; row < rows.starts.length; row++) {
    const start = rows.starts[row];
    if (row > 0 && start < rows.starts[row - 1]) {
      throw new SyntaxError(
        `Cannot load ${family.name} ranges: row ${row + 1} is not sorted by start: "${start}"`,
      );
    }
    advanceTo(start);
    stack.push(row);
    emit(start, rows.codes[row]);
  }
  advanceTo(family.spaceEnd);
  return { starts, codes };
}

function searchIpv4(starts: Uint32Array, address: number): number {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >>> 1;
    if (starts[mid] <= address) low = mid;
    else high = mid - 1;
  }
  return low;
}

function searchIpv6(starts: Uint32Array, words: Uint32Array): number {
  let low = 0;
  let high = starts.length / 4 - 1;
  while (low < high) {
    const mid = (low + high + 1) >>> 1;
    if (compareIpv6(starts, mid * 4, words) <= 0) low = mid;
    else high = mid - 1;
  }
  return low;
}

function compareIpv6(starts: Uint32Array, at: number, words: Uint32Array): number {
  for (let i = 0; i < 4; i++) {
    const difference = starts[at + i] - words[i];
    if (difference !== 0) return difference;
  }
  return 0;
}
