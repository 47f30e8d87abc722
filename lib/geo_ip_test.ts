/** @module Tests for the offline IP→country lookup against the shipped dataset and small fixtures. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { createCountryLookup, loadCountryLookup } from "./geo_ip.ts";

// Each expectation below was read from the package's geo-whois-asn-country-ipv4.csv / -ipv6.csv
// (version 2.3.2026061719); the line numbers say where.
Deno.test("loadCountryLookup() answers IPv4 addresses at range boundaries", async (t) => {
  const lookup = await loadCountryLookup();
  await t.step("first and last address of the first range (line 1: 1.0.0.0-1.0.0.255 AU)", () => {
    assert.equal(lookup("1.0.0.0"), "AU");
    assert.equal(lookup("1.0.0.255"), "AU");
    assert.equal(lookup("1.0.1.0"), "CN");
  });
  await t.step("nothing below the first range", () => {
    assert.equal(lookup("0.0.0.0"), undefined);
    assert.equal(lookup("0.255.255.255"), undefined);
  });
  await t.step("a gap between ranges (lines 9362-9363: 10.0.0.0/8 is unlisted)", () => {
    assert.equal(lookup("9.255.255.255"), "US");
    assert.equal(lookup("10.0.0.0"), undefined);
    assert.equal(lookup("10.255.255.255"), undefined);
    assert.equal(lookup("11.0.0.0"), "US");
  });
  await t.step("past the last range (223.255.255.0-223.255.255.255 AU)", () => {
    assert.equal(lookup("223.255.255.255"), "AU");
    assert.equal(lookup("224.0.0.0"), undefined);
    assert.equal(lookup("255.255.255.255"), undefined);
  });
});

Deno.test("loadCountryLookup() lets a later row win where the dataset nests ranges", async (t) => {
  const lookup = await loadCountryLookup();
  await t.step("a single address inside its container (lines 761-763)", () => {
    assert.equal(lookup("2.58.196.0"), "DE");
    assert.equal(lookup("2.58.197.14"), "DE");
    assert.equal(lookup("2.58.197.15"), "BE");
    assert.equal(lookup("2.58.197.16"), "DE");
    assert.equal(lookup("2.58.198.0"), "FR");
  });
  await t.step("a row that overlaps the end of an earlier one (lines 11683-11686)", () => {
    assert.equal(lookup("17.67.231.255"), "ES");
    assert.equal(lookup("17.67.232.0"), "DE");
    assert.equal(lookup("17.67.233.0"), "US");
    assert.equal(lookup("17.67.239.255"), "US");
    assert.equal(lookup("17.67.247.255"), "US");
    assert.equal(lookup("17.67.248.0"), "GB");
  });
  await t.step("two rows with the same start (lines 33592-33594)", () => {
    assert.equal(lookup("2405:2000:2502:f:ffff:ffff:ffff:ffff"), "JP");
    assert.equal(lookup("2405:2000:2502:10::"), "JP");
    assert.equal(lookup("2405:2000:2502:10::1"), "JP");
    assert.equal(lookup("2405:2000:2502:10::2"), "IN");
    assert.equal(lookup("2405:2000:2502:10:ffff:ffff:ffff:ffff"), "IN");
    assert.equal(lookup("2405:2000:2502:11::"), "JP");
  });
});

Deno.test("loadCountryLookup() answers IPv6 addresses in any text form", async (t) => {
  const lookup = await loadCountryLookup();
  await t.step("boundaries of 2001:218:2000:52::/64 JP between AU rows (lines 3-5)", () => {
    assert.equal(lookup("2001:218:2000:51:ffff:ffff:ffff:ffff"), "AU");
    assert.equal(lookup("2001:218:2000:52::"), "JP");
    assert.equal(lookup("2001:218:2000:52:ffff:ffff:ffff:ffff"), "JP");
    assert.equal(lookup("2001:218:2000:53::"), "AU");
  });
  await t.step("the same address written long, upper case and with a dotted tail", () => {
    assert.equal(lookup("2001:0218:2000:0052:0000:0000:0000:0000"), "JP");
    assert.equal(lookup("2001:218:2000:52:0:0:0:0"), "JP");
    assert.equal(lookup("2001:218:2000:52::0.0.0.0"), "JP");
    assert.equal(lookup("2001:218:2000:51:FFFF:FFFF:FFFF:FFFF"), "AU");
  });
  await t.step("below the first row and past the highest end", () => {
    assert.equal(lookup("::"), undefined);
    assert.equal(lookup("::1"), undefined);
    assert.equal(lookup("2001:1:ffff:ffff:ffff:ffff:ffff:ffff"), undefined);
    assert.equal(lookup("2001:2::"), "JP");
    assert.equal(lookup("2c0f:e9a0:1002:ffff:ffff:ffff:ffff:ffff"), "ZA");
    assert.equal(lookup("2c0f:e9a0:1003::"), undefined);
    assert.equal(lookup("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), undefined);
  });
  await t.step("IPv4-mapped addresses use the IPv4 table", () => {
    assert.equal(lookup("::ffff:1.0.0.255"), "AU");
    assert.equal(lookup("::FFFF:1.0.1.0"), "CN");
    assert.equal(lookup("::ffff:100:ff"), "AU");
    assert.equal(lookup("0:0:0:0:0:ffff:1.0.1.0"), "CN");
    assert.equal(lookup("::ffff:10.0.0.1"), undefined);
  });
  await t.step("IPv4-compatible (deprecated) addresses are not mapped", () => {
    assert.equal(lookup("::1.0.0.0"), undefined);
  });
});

Deno.test("loadCountryLookup() returns the same lookup on every call", async () => {
  const [first, second] = await Promise.all([loadCountryLookup(), loadCountryLookup()]);
  assert.equal(first, second);
  assert.equal(await loadCountryLookup(), first);
});

const MALFORMED = [
  "",
  " ",
  "1.0.0",
  "1.0.0.0.0",
  "1.0.0.256",
  "01.0.0.0",
  "1.0.0.00",
  "1..0.0",
  "1.0.0.0.",
  " 1.0.0.0",
  "1.0.0.0 ",
  "1.0.0.0\n",
  "1.0.0.-0",
  "1.0.0.0x1",
  "0x1.0.0.0",
  "16777216",
  ":",
  ":::",
  "1::2::3",
  ":1::",
  "1::2:",
  "1:2:3:4:5:6:7:8:9",
  "1:2:3:4:5:6:7:8::",
  "::1:2:3:4:5:6:7:8",
  "12345::",
  "g::",
  "::ffff:1.0.0",
  "::ffff:1.0.0.0.0",
  "::ffff:1.0.0.256",
  "1:2:3:4:5:6:7:1.0.0.0",
  "::1.0.0.0:1",
  "[::1]",
  "fe80::1%eth0",
  "2001:218:2000:52:: ",
  "::ffff:" + "1".repeat(40),
];

Deno.test("loadCountryLookup() answers undefined for malformed addresses", async () => {
  const lookup = await loadCountryLookup();
  for (const text of MALFORMED) {
    assert.equal(lookup(text), undefined, `expected undefined for ${JSON.stringify(text)}`);
  }
  const untyped = lookup as (ip: unknown) => string | undefined;
  for (const value of [undefined, null, 16777216, {}, ["1.0.0.0"]]) {
    assert.equal(untyped(value), undefined);
  }
});

function formatIpv4(address: number): string {
  return [24, 16, 8, 0].map((shift) => (address >>> shift) & 255).join(".");
}

Deno.test("loadCountryLookup() never throws and answers a code or undefined", async (t) => {
  const lookup = await loadCountryLookup();
  const answersSafely = (text: string) => {
    const country = lookup(text);
    assert.ok(country === undefined || /^[A-Z]{2}$/.test(country), `got ${country}`);
  };
  await t.step("for arbitrary strings", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 60 }), answersSafely));
  });
  await t.step("for strings made of address characters", () => {
    const unit = fc.constantFrom(..."0123456789abcdefABCDEF:.%[] ");
    fc.assert(fc.property(fc.string({ unit, maxLength: 50 }), answersSafely), { numRuns: 5000 });
  });
  await t.step("for mutated valid addresses", () => {
    const address = fc.oneof(
      fc.ipV4(),
      fc.ipV6(),
      fc.ipV4().map((ip) => "::ffff:" + ip),
    );
    const mutated = fc.tuple(address, fc.nat(), fc.string({ maxLength: 3 })).map(
      ([ip, at, insert]) =>
        ip.slice(0, at % (ip.length + 1)) + insert + ip.slice(at % ip.length + 1),
    );
    fc.assert(fc.property(mutated, answersSafely), { numRuns: 5000 });
  });
  await t.step("and a mapped address answers like its IPv4 form", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (address) => {
        const dotted = formatIpv4(address);
        const hex = `::ffff:${(address >>> 16).toString(16)}:${(address & 0xffff).toString(16)}`;
        assert.equal(lookup("::ffff:" + dotted), lookup(dotted));
        assert.equal(lookup(hex), lookup(dotted));
      }),
      { numRuns: 5000 },
    );
  });
  await t.step("and fast-check's valid addresses all parse to the same answer long-hand", () => {
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        // Expand "::" by hand so the comparison does not reuse the parser under test.
        const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
        if (tail === undefined || ip.includes(".")) return;
        const headGroups = head === "" ? [] : head.split(":");
        const tailGroups = tail === "" ? [] : tail.split(":");
        const zeros = Array(8 - headGroups.length - tailGroups.length).fill("0");
        const long = [...headGroups, ...zeros, ...tailGroups].map((g) => g.padStart(4, "0"));
        assert.equal(lookup(long.join(":")), lookup(ip));
      }),
      { numRuns: 5000 },
    );
  });
});

Deno.test("createCountryLookup() resolves nested, overlapping and duplicate rows", () => {
  const lookup = createCountryLookup({
    ipv4NumCsv: [
      "0,0,AA", // the very first address
      "10,100,BB",
      "20,30,CC", // nested
      "25,25,DD", // nested twice
      "90,120,EE", // overlaps the end of 10-100
      "110,115,FF",
      "110,115,GG", // duplicate: the later one wins
      "4294967295,4294967295,ZZ", // the very last address
    ].join("\n") + "\n",
    ipv6NumCsv:
      "0,1,AA\r\n340282366920938463463374607431768211455,340282366920938463463374607431768211455,ZZ",
  });
  const expected: [number, string | undefined][] = [
    [0, "AA"],
    [1, undefined],
    [9, undefined],
    [10, "BB"],
    [19, "BB"],
    [20, "CC"],
    [24, "CC"],
    [25, "DD"],
    [26, "CC"],
    [30, "CC"],
    [31, "BB"],
    [89, "BB"],
    [90, "EE"],
    [100, "EE"],
    [109, "EE"],
    [110, "GG"],
    [115, "GG"],
    [116, "EE"],
    [120, "EE"],
    [121, undefined],
    [4294967294, undefined],
    [4294967295, "ZZ"],
  ];
  for (const [address, country] of expected) {
    assert.equal(lookup(formatIpv4(address)), country, `address ${address}`);
  }
  assert.equal(lookup("::"), "AA");
  assert.equal(lookup("::1"), "AA");
  assert.equal(lookup("::2"), undefined);
  assert.equal(lookup("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), undefined);
  assert.equal(lookup("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "ZZ");
});

Deno.test("createCountryLookup() refuses malformed datasets", async (t) => {
  const cases: [string, string, string][] = [
    [
      "a line without a country",
      "1,2\n",
      'Cannot parse IPv4 ranges: line 1 is not "start,end,CC": "1,2"',
    ],
    [
      "an end before its start",
      "1,2,AU\n5,4,NZ",
      'Cannot parse IPv4 ranges: line 2 is not "start,end,CC": "5,4,NZ"',
    ],
    [
      "an end past the address space",
      "0,4294967296,AU",
      'line 1 is not "start,end,CC": "0,4294967296,AU"',
    ],
    [
      "a lower-case code",
      "1,2,au",
      'Cannot parse IPv4 ranges: line 1 is not "start,end,CC": "1,2,au"',
    ],
    [
      "rows out of order",
      "5,6,AU\n1,2,NZ",
      'Cannot load IPv4 ranges: row 2 is not sorted by start: "1"',
    ],
  ];
  for (const [name, ipv4NumCsv, message] of cases) {
    await t.step(name, () => {
      assert.throws(() => createCountryLookup({ ipv4NumCsv, ipv6NumCsv: "" }), (error) => {
        assert.ok(error instanceof SyntaxError);
        assert.ok(error.message.includes(message), error.message);
        return true;
      });
    });
  }
  await t.step("an IPv6 end past the address space", () => {
    assert.throws(
      () => createCountryLookup({ ipv4NumCsv: "", ipv6NumCsv: "0," + (1n << 128n) + ",AU" }),
      { name: "SyntaxError", message: /^Cannot parse IPv6 ranges: line 1 is not/ },
    );
  });
});

Deno.test("wrong country: a malformed address gets no country even where every address has one", () => {
  // Every address in both families has a country here, so a parser that reads a malformed text
  // as *some* address shows up: the shipped dataset leaves 0001::/16 and friends empty.
  const lookup = createCountryLookup({
    ipv4NumCsv: "0,4294967295,ZZ\n",
    ipv6NumCsv: "0,340282366920938463463374607431768211455,ZZ\n",
  });
  assert.equal(lookup("1.0.0.1"), "ZZ");
  assert.equal(lookup("2001:218:2000:52::1"), "ZZ");
  assert.equal(lookup("::ffff:1.2.3.4"), "ZZ");
  for (
    const text of [
      ...MALFORMED,
      "1-0-0-1",
      "1.0.0,1",
      ":123:4:5:6:7:8:9",
      "2001:0218:2000:00052::",
      "1-2::",
      "2001:218:g::",
      // A colon is the character after '9': a digit test that let it through read "3:" as 40.
      "::1.2.3:",
      "::ffff:1.2.3:",
      "::ffff:1.2.3.4:",
    ]
  ) {
    assert.equal(lookup(text), undefined, `expected undefined for ${JSON.stringify(text)}`);
  }
});

Deno.test("wrong country: only ::ffff:0:0/96 is read through the IPv4 table", () => {
  const lookup = createCountryLookup({
    ipv4NumCsv: "0,4294967295,AA\n",
    ipv6NumCsv: "0,340282366920938463463374607431768211455,BB\n",
  });
  assert.equal(lookup("::ffff:1.0.0.1"), "AA");
  // Same low 96 bits, but a global prefix in front: an IPv6 address like any other.
  assert.equal(lookup("2001:218:0:0:0:ffff:1.0.0.1"), "BB");
  assert.equal(lookup("2001:218::ffff:100:1"), "BB");
  assert.equal(lookup("0:1::ffff:1.0.0.1"), "BB");
  assert.equal(lookup("0:0:0:1:0:ffff:1.0.0.1"), "BB");
});

Deno.test("geo: the longest text form of an address (45 characters) is still looked up", () => {
  const lookup = createCountryLookup({ ipv4NumCsv: "4294967295,4294967295,AU\n", ipv6NumCsv: "" });
  const longest = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
  assert.equal(longest.length, 45);
  assert.equal(lookup("::ffff:255.255.255.255"), "AU");
  assert.equal(lookup(longest), "AU");
  assert.equal(lookup(`0${longest}`), undefined);
});

Deno.test("createCountryLookup() refuses a country code that is not two letters A-Z", () => {
  for (const code of ["A[", "[A", "@A", "aU"]) {
    assert.throws(
      () => createCountryLookup({ ipv4NumCsv: `0,255,${code}\n`, ipv6NumCsv: "" }),
      SyntaxError,
      code,
    );
  }
});
