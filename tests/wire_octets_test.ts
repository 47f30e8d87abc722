/**
 * Hazard: vestibule reads header text one character per octet received (Deno hands header values
 * over as ByteStrings: é sent in UTF-8 is "Ã©"), while a rules file, and the apps behind it, may
 * read the same octets as UTF-8. Every request here is written as raw bytes on a socket, as a
 * real client sends it, and every answer comes from a real upstream.
 */
import assert from "node:assert/strict";
import { RulesError } from "../lib/compile_rules.ts";
import { parseRules } from "../lib/load_rules.ts";
import { parseRouteCases, runRouteCases } from "../lib/route_cases.ts";
import { oneRegion, rawUpstream, startUpstream, startVestibule, twoRegions } from "./_servers.ts";

const utf8 = new TextEncoder();

/** Sends `head` (already bytes) on a new connection; returns the answer read as Latin-1. */
async function rawSend(port: number, head: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(head);
  return new TextDecoder("latin1").decode(await new Response(conn.readable).arrayBuffer());
}

/** A request head whose text is sent as UTF-8, as curl sends what a UTF-8 terminal typed. */
function utf8Request(lines: string[]): Uint8Array {
  return utf8.encode(`${lines.join("\r\n")}\r\nConnection: close\r\n\r\n`);
}

function refusal(file: unknown): string {
  try {
    parseRules(JSON.stringify(file), { env: () => undefined });
  } catch (error) {
    assert.ok(error instanceof RulesError, `expected RulesError, got ${error}`);
    return error.message;
  }
  assert.fail("start-up accepted the rules file");
}

// Python's str.strip() (Django's parse_cookie, after WSGI Django decodes HTTP_COOKIE as UTF-8)
// removes these; sent as UTF-8 they are two or three octets, none of which JavaScript trims.
const UNICODE_SPACES: Array<[string, string]> = [
  ["NEL (C2 85)", "\u0085"],
  ["no-break space (C2 A0)", "\u00a0"],
  ["en quad (E2 80 80)", "\u2000"],
  ["line separator (E2 80 A8)", "\u2028"],
  ["ideographic space (E3 80 80)", "\u3000"],
];

Deno.test("pin leak: a pin cookie name after a Unicode space sent as UTF-8 never reaches an upstream", async (t) => {
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    for (const [label, space] of UNICODE_SPACES) {
      await t.step(label, async () => {
        // Pinned by header: every cookie but the pin is forwarded, so the filter alone decides.
        const answer = await rawSend(
          edge.port,
          utf8Request([
            "GET / HTTP/1.1",
            "Host: app.example",
            "X-Vestibule-Region: us",
            `Cookie: csrftoken=c;${space}__Host-vestibule-region=au`,
          ]),
        );
        assert.match(answer, /^HTTP\/1\.1 200/);
        const cookie = us.received.at(-1)!.headers.get("cookie");
        assert.ok(!/vestibule.region/i.test(cookie ?? ""), `cookie: ${cookie} reached the app`);
        assert.equal(cookie, "csrftoken=c", "the other cookie is still forwarded");
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("compileRules() refuses a match.host with a non-ASCII character, which no client sends", async (t) => {
  const rules = (host: string) => ({
    regions: { us: { origin: "http://127.0.0.1:1" } },
    default_region: "us",
    rules: [{ name: "books", type: "regional", match: { host } }, {
      name: "app",
      type: "regional",
    }],
  });
  await t.step("bücher.example is refused, naming punycode", () => {
    assert.match(refusal(rules("^bücher\\.example$")), /match\.host.*punycode/);
  });
  await t.step("what clients send: the punycode rule matches it, raw UTF-8 is a 400", async () => {
    const us = startUpstream();
    const edge = startVestibule({
      ...rules("^xn--bcher-kva\\.example$"),
      regions: { us: { origin: us.url } },
      debug_headers: true,
    });
    try {
      const puny = await rawSend(
        edge.port,
        utf8Request(["GET / HTTP/1.1", "Host: xn--bcher-kva.example"]),
      );
      assert.match(puny, /\r\nx-vestibule-rule: books\r\n/i);
      const raw = await rawSend(edge.port, utf8Request(["GET / HTTP/1.1", "Host: bücher.example"]));
      assert.match(raw, /^HTTP\/1\.1 400/);
    } finally {
      await Promise.all([edge.close(), us.close()]);
    }
  });
});

Deno.test("compileRules() refuses a header regex with a non-ASCII character: values are matched octet by octet", async (t) => {
  const regions = { us: { origin: "http://127.0.0.1:1" } };
  await t.step("match.headers", () => {
    const message = refusal({
      regions,
      default_region: "us",
      rules: [{ name: "fr", type: "regional", match: { headers: { "x-tenant": "^café$" } } }],
    });
    assert.match(message, /match\.headers\.x-tenant.*\\xC3\\xA9/);
  });
  await t.step("success.headers", () => {
    const message = refusal({
      regions,
      default_region: "us",
      rules: [{
        name: "login",
        type: "broadcast",
        success: { headers: { "x-owner": "^café$" } },
      }],
    });
    assert.match(message, /success\.headers\.x-owner.*\\xC3\\xA9/);
  });
  await t.step("the octets it names match a UTF-8 client; the character never did", async () => {
    const us = startUpstream();
    const edge = startVestibule({
      regions: { us: { origin: us.url } },
      default_region: "us",
      debug_headers: true,
      rules: [
        { name: "fr", type: "regional", match: { headers: { "x-tenant": "^caf\\xC3\\xA9$" } } },
        { name: "app", type: "regional" },
      ],
    });
    try {
      const answer = await rawSend(
        edge.port,
        utf8Request(["GET / HTTP/1.1", "Host: app.example", "X-Tenant: café"]),
      );
      assert.match(answer, /\r\nx-vestibule-rule: fr\r\n/i);
    } finally {
      await Promise.all([edge.close(), us.close()]);
    }
  });
});

Deno.test("forward_cookies names a cookie as the browser sends it: a non-ASCII name in UTF-8", async () => {
  const web = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: web.url } },
    upstreams: { website: { origin: web.url } },
    default_region: "us",
    rules: [{
      name: "website",
      type: "global",
      upstream: "website",
      forward_cookies: ["préférence"],
    }],
  });
  try {
    const answer = await rawSend(
      edge.port,
      utf8Request(["GET / HTTP/1.1", "Host: app.example", "Cookie: sessionid=s; préférence=fr"]),
    );
    assert.match(answer, /^HTTP\/1\.1 200/);
    // The octets the browser sent, one character each, as Deno hands them over.
    const sent = String.fromCharCode(...utf8.encode("préférence=fr"));
    assert.equal(web.received.at(-1)!.headers.get("cookie"), sent);
  } finally {
    await Promise.all([edge.close(), web.close()]);
  }
});

Deno.test("success.set_cookie with a non-ASCII name counts the cookie an origin sets in UTF-8", async (t) => {
  // voilà's last octet (C3 A0) is a Latin-1 no-break space of its own: trimmed, it never matched.
  for (const name of ["sessión", "voilà"]) {
    await t.step(name, async () => {
      const origin = startUpstream(() =>
        // The octets of the cookie in UTF-8, written one character per octet.
        new Response("ok", { headers: { "set-cookie": `${inUtf8(name)}=abc; Path=/` } })
      );
      const edge = startVestibule({
        regions: { us: { origin: origin.url }, au: { origin: origin.url } },
        default_region: "us",
        rules: [{
          name: "switch",
          type: "regional",
          match: { path: "^/switch/(?<region>\\w+)$" },
          region_from: { path_group: "region" },
          pin_on: { set_cookie: name },
        }],
      });
      try {
        const answer = await rawSend(
          edge.port,
          utf8Request(["GET /switch/au HTTP/1.1", "Host: app.example"]),
        );
        assert.match(answer, /^HTTP\/1\.1 200/);
        assert.match(answer, /\r\nset-cookie: __Host-vestibule-region=au;/i, "pinned to au");
      } finally {
        await Promise.all([edge.close(), origin.close()]);
      }
    });
  }
});

Deno.test("route-table cases send a typed header value as curl does, in UTF-8: check-rules agrees with the router", async (t) => {
  const us = startUpstream();
  const rules = {
    regions: { us: { origin: us.url } },
    default_region: "us",
    debug_headers: true,
    // One character in a value: `é` is two octets as clients send it.
    rules: [
      { name: "one-char", type: "regional", match: { headers: { "x-tenant": "^caf.$" } } },
      { name: "app", type: "regional" },
    ],
  };
  const edge = startVestibule(rules);
  try {
    let routed: string | undefined;
    await t.step("the router, sent `X-Tenant: café` in UTF-8", async () => {
      const answer = await rawSend(
        edge.port,
        utf8Request(["GET / HTTP/1.1", "Host: app.example", "X-Tenant: café"]),
      );
      routed = /\r\nx-vestibule-rule: (\S+)\r\n/i.exec(answer)?.[1];
      assert.equal(routed, "app");
    });
    await t.step("a route case with the same header expects what the router did", async () => {
      const config = parseRules(JSON.stringify(rules), { env: () => undefined });
      const cases = parseRouteCases(JSON.stringify({
        cases: [{
          request: { method: "GET", url: "https://app.example/", headers: { "X-Tenant": "café" } },
          expect: { rule: "app", type: "regional" },
        }],
      }));
      const [result] = await runRouteCases(cases, config);
      assert.deepEqual(result.mismatches, []);
      assert.equal(result.error, undefined);
    });
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

/** `text` as octets, one per character: how an origin's bytes that are not UTF-8 are written here. */
const octets = (text: string) => Uint8Array.from(text, (char) => char.charCodeAt(0));
/** `text` in UTF-8, one character per octet (as `fetch` hands it over). */
const inUtf8 = (text: string) => String.fromCharCode(...utf8.encode(text));

/** The value of the first `name:` line of a raw answer, or "(none)". */
function headerLine(answer: string, name: string): string {
  const line = answer.split("\r\n").find((l) => l.toLowerCase().startsWith(`${name}:`));
  return line === undefined ? "(none)" : line.slice(name.length + 1).trim();
}

Deno.test("origin address leak: a Location naming the origin in UTF-8 beside an octet that is not UTF-8 points back at the public host", async (t) => {
  // Browsers read a Location one component at a time: Firefox percent-encodes each octet above
  // 0x7F and then parses, Chrome decodes the host alone as UTF-8. A host in UTF-8 is the origin
  // whatever octets the path holds; the path keeps the octet the origin wrote.
  const cases: Array<[string, (port: number) => string, string]> = [
    [
      // Full-width digits: UTS 46 maps them, so a browser goes to 127.0.0.1.
      "full-width host in UTF-8, a Latin-1 é in the path",
      (port) => `${inUtf8("http://１２７.０.０.１")}:${port}/caf\xE9`,
      "http://app.example.com/caf%E9",
    ],
    [
      "ASCII host, a Latin-1 é in the query",
      (port) => `http://127.0.0.1:${port}/?q=caf\xE9`,
      "http://app.example.com/?q=caf%E9",
    ],
  ];
  for (const [label, location, expected] of cases) {
    await t.step(label, async () => {
      const up = rawUpstream((url) =>
        octets(
          `HTTP/1.1 302 Found\r\nLocation: ${location(Number(new URL(url).port))}\r\n` +
            "Content-Length: 0\r\nConnection: close\r\n\r\n",
        )
      );
      const edge = startVestibule(oneRegion(up.url));
      try {
        const answer = await rawSend(
          edge.port,
          utf8Request(["GET / HTTP/1.1", "Host: app.example.com"]),
        );
        assert.equal(headerLine(answer, "location"), expected);
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
});

Deno.test("cookie scope: a Domain naming the origin behind an A0 octet keeps the scope browsers give it there", async (t) => {
  // Browsers trim only SP and HTAB around cookie attributes (RFC 6265 §5.2), and refuse a Domain
  // with a non-ASCII octet (RFC 6265bis, httpwg/http-extensions#1969); JavaScript's \s and trim()
  // take A0 for a space. Rewritten to a clean `; Domain=`, a host-only cookie became one sent to
  // every subdomain of the public host, and a refused one was stored.
  const cases: Array<[string, string, string]> = [
    [
      'an attribute named "\\xA0Domain" (ignored: host-only)',
      "sid=1; Path=/;\xA0Domain=127.0.0.1",
      "sid=1; Path=/;\xA0Domain=app.example.com",
    ],
    [
      "a Domain value ending in A0 (refused)",
      "sid=2; Domain=127.0.0.1\xA0; Path=/",
      "sid=2; Domain=app.example.com\xA0; Path=/",
    ],
    [
      "a Domain with spaces, as browsers trim them (rewritten)",
      "sid=3; Domain = 127.0.0.1 ; Path=/",
      "sid=3; Domain=app.example.com; Path=/",
    ],
  ];
  for (const [label, sent, expected] of cases) {
    await t.step(label, async () => {
      const up = rawUpstream(() =>
        octets(
          `HTTP/1.1 200 OK\r\nSet-Cookie: ${sent}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
        )
      );
      const edge = startVestibule(oneRegion(up.url));
      try {
        const answer = await rawSend(
          edge.port,
          utf8Request(["GET / HTTP/1.1", "Host: app.example.com"]),
        );
        assert.equal(headerLine(answer, "set-cookie"), expected);
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
});

Deno.test("cookie tossing: a pin cookie behind a UTF-8 no-break space, which a sibling subdomain's script can set, does not pin", async (t) => {
  // `document.cookie = "\u00a0__Host-vestibule-region=au; domain=example.com"` on any
  // *.example.com page: browsers trim only SP and HTAB, so the name keeps its NBSP and none of the
  // __Host- rules (no Domain, set by this host over https) apply to it.
  const au = startUpstream(() => new Response("au"));
  const us = startUpstream(() => new Response("us"));
  const edge = startVestibule(twoRegions(au.url, us.url));
  try {
    for (const space of ["\u00a0", "\u2000", "\u3000"]) {
      await t.step(`U+${space.charCodeAt(0).toString(16).toUpperCase()}`, async () => {
        const answer = await rawSend(
          edge.port,
          utf8Request([
            "GET / HTTP/1.1",
            "Host: app.example.com",
            `Cookie: ${space}__Host-vestibule-region=au`,
          ]),
        );
        assert.match(answer, /^HTTP\/1\.1 200/);
        assert.match(answer, /\r\n\r\nus$/, "a cookie the edge never set chose the region");
      });
    }
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

// Names whose last character's UTF-8 form ends in A0 or 85, the octets of NBSP and NEL.
const NAMES = ["voilà", "смех"];

Deno.test("forward_cookies forwards a non-ASCII name whose last UTF-8 octet is A0 or 85", async (t) => {
  const web = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: web.url } },
    upstreams: { website: { origin: web.url } },
    default_region: "us",
    rules: [{ name: "website", type: "global", upstream: "website", forward_cookies: NAMES }],
  });
  try {
    for (const name of NAMES) {
      await t.step(name, async () => {
        const answer = await rawSend(
          edge.port,
          utf8Request(["GET / HTTP/1.1", "Host: app.example", `Cookie: sessionid=s; ${name}=1`]),
        );
        assert.match(answer, /^HTTP\/1\.1 200/);
        assert.equal(web.received.at(-1)!.headers.get("cookie"), inUtf8(`${name}=1`));
      });
    }
  } finally {
    await Promise.all([edge.close(), web.close()]);
  }
});

Deno.test("forward_cookies allow-list bypass: a cookie sharing all but the last UTF-8 octet with a listed name is not forwarded", async (t) => {
  // forward_cookies: ["voilà"] (76 6F 69 6C C3 A0). "voilÅ" (… C3 85) and "voil\xC3" are other
  // cookies to a browser and to Django (which decodes UTF-8 first); neither is listed.
  const web = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: web.url } },
    upstreams: { website: { origin: web.url } },
    default_region: "us",
    rules: [{ name: "website", type: "global", upstream: "website", forward_cookies: ["voilà"] }],
  });
  try {
    for (const [label, name] of [["voilÅ", inUtf8("voilÅ")], ["voil\\xC3", "voil\xC3"]]) {
      await t.step(label, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
        await conn.write(Uint8Array.from(
          `GET / HTTP/1.1\r\nHost: app.example\r\nCookie: ${name}=unlisted; ${
            inUtf8("voilà")
          }=1\r\nConnection: close\r\n\r\n`,
          (c) => c.charCodeAt(0),
        ));
        const answer = new TextDecoder("latin1").decode(
          await new Response(conn.readable).arrayBuffer(),
        );
        assert.match(answer, /^HTTP\/1\.1 200/);
        assert.equal(web.received.at(-1)!.headers.get("cookie"), inUtf8("voilà=1"));
      });
    }
  } finally {
    await Promise.all([edge.close(), web.close()]);
  }
});
