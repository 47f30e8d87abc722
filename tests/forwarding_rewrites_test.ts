/**
 * What the client gets back when the upstream's answer names the upstream itself (Location,
 * Set-Cookie Domain), behind trusted proxies, and when it carries headers meant for one hop only.
 * The raw socket helpers send and read bytes exactly, with no client library tidying them up.
 */
import assert from "node:assert/strict";
import { brotliCompressSync, deflateSync, gzipSync, zstdCompressSync } from "node:zlib";
import {
  answerBody,
  answerHead,
  oneRegion,
  rawRequest,
  rawUpstream,
  startUpstream,
  startVestibule,
} from "./_servers.ts";

Deno.test("https downgrade behind a trusted proxy: Location and cookie Domain use X-Forwarded-Proto and -Host", async () => {
  const up = startUpstream((req) => {
    const headers = new Headers({ location: `${new URL(req.url).origin}/next` });
    headers.append("set-cookie", `sid=1; Domain=${new URL(req.url).hostname}; Path=/`);
    return new Response(null, { status: 302, headers });
  });
  const edge = startVestibule(oneRegion(up.url, { trusted_proxy_hops: 1 }));
  try {
    const answer = await rawRequest(
      edge.port,
      "GET /login HTTP/1.1\r\nHost: 10.0.0.5:8000\r\nX-Forwarded-Proto: https\r\n" +
        "X-Forwarded-Host: app.example.com\r\nX-Forwarded-For: 203.0.113.9\r\n" +
        "Connection: close\r\n\r\n",
    );
    assert.equal(up.received[0].headers.get("x-forwarded-proto"), "https");
    assert.equal(up.received[0].headers.get("x-forwarded-host"), "app.example.com");
    assert.match(answer, /\r\nlocation: https:\/\/app\.example\.com\/next\r\n/i);
    assert.match(answer, /\r\nset-cookie: sid=1; Domain=app\.example\.com; Path=\/\r\n/i);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("behind one trusted proxy, only the X-Forwarded-Host entry it wrote counts", async (t) => {
  const up = startUpstream((req) =>
    new Response(null, { status: 302, headers: { location: `${new URL(req.url).origin}/next` } })
  );
  const edge = startVestibule(oneRegion(up.url, { trusted_proxy_hops: 1 }));
  try {
    await t.step(
      "open redirect through an appending proxy: the client's own entry is ignored",
      async () => {
        // The client sent "evil.example"; the one trusted proxy appended what it saw.
        const answer = await rawRequest(
          edge.port,
          "GET / HTTP/1.1\r\nHost: 10.0.0.5\r\nX-Forwarded-Host: evil.example, app.example.com\r\n" +
            "X-Forwarded-Proto: http, https\r\nConnection: close\r\n\r\n",
        );
        assert.match(answer, /\r\nlocation: https:\/\/app\.example\.com\/next\r\n/i);
        // The app gets the one entry the edge trusted, not the chain the client started.
        assert.equal(up.received[0].headers.get("x-forwarded-host"), "app.example.com");
        assert.equal(up.received[0].headers.get("x-forwarded-proto"), "https");
      },
    );
    await t.step("path splicing: an entry that is not a host is 400 bad_host", async () => {
      const answer = await rawRequest(
        edge.port,
        "GET / HTTP/1.1\r\nHost: 10.0.0.5\r\nX-Forwarded-Host: evil.example/x?\r\n" +
          "Connection: close\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.match(answer, /bad_host/);
      assert.equal(up.received.length, 1, "only the first step's request reached the app");
    });
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("behind a trusted proxy, match.host tests the public host the proxy vouches for", async () => {
  const admin = startUpstream();
  const app = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: app.url } },
    upstreams: { admin: { origin: admin.url } },
    default_region: "us",
    trusted_proxy_hops: 1,
    rules: [
      {
        name: "admin",
        type: "global",
        match: { host: "^admin\\.example\\.com$" },
        upstream: "admin",
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    // The proxy dialled vestibule by address; the client asked for admin.example.com.
    await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: 10.0.0.5:8000\r\nX-Forwarded-Host: admin.example.com\r\n" +
        "Connection: close\r\n\r\n",
    );
    // A client's own X-Forwarded-Host, left of the proxy's entry, decides nothing.
    await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: 10.0.0.5:8000\r\n" +
        "X-Forwarded-Host: admin.example.com, app.example.com\r\nConnection: close\r\n\r\n",
    );
    // A fully qualified name with its trailing dot is the same host (nginx drops the dot too).
    await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: 10.0.0.5:8000\r\nX-Forwarded-Host: admin.example.com.\r\n" +
        "Connection: close\r\n\r\n",
    );
    assert.equal(admin.received.length, 2);
    assert.equal(app.received.length, 1);
    assert.equal(app.received[0].headers.get("x-forwarded-host"), "app.example.com");
  } finally {
    await Promise.all([edge.close(), admin.close(), app.close()]);
  }
});

Deno.test("scheme and address spoofing: a client cannot claim https, a port or an IP through vestibule", async (t) => {
  const claims = {
    "x-forwarded-ssl": "on",
    "x-forwarded-port": "443",
    "x-forwarded-scheme": "https",
    "x-forwarded-prefix": "/admin",
    "x-forwarded-server": "admin.internal",
    "front-end-https": "on",
    "x-url-scheme": "https",
    // Tornado (xheaders=True, Jupyter Server) reads X-Scheme before X-Forwarded-Proto.
    "x-scheme": "https",
    // Jetty's ForwardedRequestCustomizer: https, port 443; either of the next two marks the
    // request secure (sslIsSecure, on by default).
    "x-proxied-https": "on",
    "proxy-ssl-id": "x",
    "proxy-auth-cert": "x",
    // WebLogic with "WebLogic Plugin Enabled": the request came over SSL.
    "wl-proxy-ssl": "true",
    "x-real-ip": "10.0.0.1",
    forwarded: "for=10.0.0.1;proto=https",
  };
  for (const hops of [0, 1]) {
    await t.step(`trusted_proxy_hops ${hops}`, async () => {
      const up = startUpstream();
      const edge = startVestibule(oneRegion(up.url, { trusted_proxy_hops: hops }));
      try {
        const res = await fetch(`${edge.url}/`, {
          headers: { ...claims, "x-forwarded-for": "203.0.113.9" },
        });
        await res.body?.cancel();
        const got = up.received[0].headers;
        // vestibule's own judgement of the client, whoever is in front.
        assert.equal(got.get("x-real-ip"), hops ? "203.0.113.9" : "127.0.0.1");
        for (const name of Object.keys(claims).filter((n) => n !== "x-real-ip")) {
          // A trusted proxy in front vouches for what it passes on; nobody else may claim it.
          assert.equal(got.get(name), hops ? claims[name as keyof typeof claims] : null, name);
        }
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
});

Deno.test("forwarded headers without trusted proxies: Location keeps vestibule's own scheme and Host", async () => {
  const up = startUpstream((req) =>
    new Response(null, { status: 302, headers: { location: `${new URL(req.url).origin}/next` } })
  );
  const edge = startVestibule(oneRegion(up.url));
  try {
    const answer = await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-Host: evil.example\r\n" +
        "X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /\r\nlocation: http:\/\/app\.example\.com\/next\r\n/i);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("origin address leak: every Location form a browser reads as the origin points back at the public host", async (t) => {
  const plain = "GET /login HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n";
  const viaTls = "GET /login HTTP/1.1\r\nHost: 10.0.0.5:8000\r\nX-Forwarded-Proto: https\r\n" +
    "X-Forwarded-Host: app.example.com\r\nConnection: close\r\n\r\n";
  // Browsers read a backslash as a slash and drop tabs and newlines (WHATWG URL); on an https
  // page `http:host` is absolute; an app that trusts only X-Forwarded-Proto writes https://host.
  const cases: [form: string, request: string, expected: string][] = [
    ["//HOST/next", plain, "http://app.example.com/next"],
    ["/\\HOST/next", plain, "http://app.example.com/next"],
    ["\\\\HOST/next", plain, "http://app.example.com/next"],
    ["http:\\\\HOST/next", plain, "http://app.example.com/next"],
    ["/\t/HOST/next", plain, "http://app.example.com/next"],
    ["ht\ttp://HOST/next?a=1#f", plain, "http://app.example.com/next?a=1#f"],
    ["http:HOST/next", viaTls, "https://app.example.com/next"],
    ["http:/HOST/next", viaTls, "https://app.example.com/next"],
    ["https://HOST/next", viaTls, "https://app.example.com/next"],
  ];
  for (const [form, request, expected] of cases) {
    await t.step(JSON.stringify(form), async () => {
      const up = startUpstream((req) =>
        new Response(null, {
          status: 302,
          headers: { location: form.replace("HOST", new URL(req.url).host) },
        })
      );
      const edge = startVestibule(oneRegion(up.url, { trusted_proxy_hops: 1 }));
      try {
        const answer = await rawRequest(edge.port, request);
        const location = answer.split("\r\n").find((l) => /^location:/i.test(l));
        assert.equal(location?.slice(location.indexOf(":") + 1).trim(), expected, answer);
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
  await t.step("a Location elsewhere, or a path, is left as it is", async () => {
    const forms = ["/\\docs", "https://other.example/x", "\\\\other.example/x", "next", "/next"];
    const up = startUpstream((req) =>
      new Response(null, {
        status: 302,
        headers: { location: forms[Number(new URL(req.url).searchParams.get("i"))] },
      })
    );
    const edge = startVestibule(oneRegion(up.url));
    try {
      for (const [i, form] of forms.entries()) {
        const answer = await rawRequest(
          edge.port,
          `GET /?i=${i} HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n`,
        );
        const location = answer.split("\r\n").find((l) => /^location:/i.test(l));
        assert.equal(location?.slice(location.indexOf(":") + 1).trim(), form);
      }
    } finally {
      await Promise.all([edge.close(), up.close()]);
    }
  });
});

Deno.test("origin address leak: a Refresh header naming the origin points back at the public host", async (t) => {
  let refresh = "";
  const up = startUpstream((req) =>
    new Response("logged out", {
      headers: { refresh: refresh.replace("ORIGIN", new URL(req.url).origin) },
    })
  );
  const edge = startVestibule(oneRegion(up.url));
  const cases: Array<[string, string]> = [
    ["0; url=ORIGIN/login", "0; url=http://app.example.com/login"],
    ["5;URL='ORIGIN/a?b=1'", "5;URL='http://app.example.com/a?b=1'"],
    ["3, ORIGIN/next", "3, http://app.example.com/next"],
    ["1; url=https://elsewhere.example/x", "1; url=https://elsewhere.example/x"], // not the origin
    ["30", "30"],
  ];
  try {
    for (const [sent, expected] of cases) {
      await t.step(sent, async () => {
        refresh = sent;
        const answer = await rawRequest(
          edge.port,
          "GET /logout HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        );
        assert.equal(/\r\nrefresh: ([^\r]*)\r\n/i.exec(answer)?.[1], expected);
        assert.doesNotMatch(answer, /127\.0\.0\.1/);
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

/** The values of header `name` in a raw answer, one per line, as the client's parser sees them. */
function headerLines(answer: string, name: string): string[] {
  return answer.slice(0, answer.indexOf("\r\n\r\n")).split("\r\n")
    .filter((line) => line.toLowerCase().startsWith(`${name}:`))
    .map((line) => line.slice(line.indexOf(":") + 1).trim());
}

// An origin may write either twice (a framework and a middleware both redirecting, PHP's
// `header("Location: …", false)`); `fetch` joins the lines with ", ". nginx keeps the first line.
Deno.test("origin address leak: a Location or Refresh written twice reaches the client on the public host, not glued into one URL; one holding ', ' goes whole", async (t) => {
  const cases = [
    // Chrome and Firefox follow a Location repeated with the same value.
    ["Location: the same URL twice", "location", (o: string) => [`${o}/next`, `${o}/next`], [
      "http://app.example/next",
    ]],
    ["Location: a path, then the origin's URL", "location", (o: string) => ["/next", `${o}/next`], [
      "/next",
    ]],
    [
      "Refresh: the same URL twice",
      "refresh",
      (o: string) => [`0; url=${o}/next`, `0; url=${o}/next`],
      [
        "0; url=http://app.example/next",
      ],
    ],
    ["Refresh: an empty line, then the origin's URL", "refresh", (o: string) => [
      "",
      `0; url=${o}/next`,
    ], [""]],
    ["Location: the origin's URL, then a path", "location", (o: string) => [
      `${o}/next`,
      "/other",
    ], ["http://app.example/next"]],
    ["Location: a path, then the origin's URL with backslashes", "location", (o: string) => [
      "/next",
      `http:\\\\${new URL(o).host}\\next`,
    ], ["/next"]],
    ["Location: a path, then the origin's URL in capitals", "location", (o: string) => [
      "/next",
      `HTTP://${new URL(o).host}/next`,
    ], ["/next"]],
    ["Refresh: then a fractional time and the origin's URL", "refresh", (o: string) => [
      "0; url=/next",
      `1.5; url=${o}/next`,
    ], ["0; url=/next"]],
    ["Refresh: then a time, a space before ';' and the origin's URL", "refresh", (o: string) => [
      "0; url=/next",
      `5 ; url=${o}/next`,
    ], ["0; url=/next"]],
    // HTML's refresh parsing reads ',' after the time as ';', and so does the rewrite.
    ["Refresh: its comma form twice", "refresh", (o: string) => [
      `5, url=${o}/next`,
      `5, url=${o}/next`,
    ], ["5, url=http://app.example/next"]],
    // HTML reads `5, URL` and `5 URL` as a time and a URL without `url=`.
    ["Refresh: its comma form with a bare URL, twice", "refresh", (o: string) => [
      `5, ${o}/next`,
      `5, ${o}/next`,
    ], ["5, http://app.example/next"]],
    ["Refresh: a path, then the comma form with the origin's URL", "refresh", (o: string) => [
      "5, /next",
      `5, ${o}/next`,
    ], ["5, /next"]],
    ["Refresh: a path, then the space form with the origin's URL", "refresh", (o: string) => [
      "5 /next",
      `5 ${o}/next`,
    ], ["5 /next"]],
    // One line each, which only look like two once joined: passed on whole.
    ["Refresh: ', ' and a number in its URL", "refresh", () => ["0; url=/news?d=Dec 7, 2026"], [
      "0; url=/news?d=Dec 7, 2026",
    ]],
    ["Location: ', ' and a word with a colon in its query", "location", () => [
      "/search?q=error, TypeError: boom",
    ], ["/search?q=error, TypeError: boom"]],
  ] as const;
  for (const [name, header, lines, expected] of cases) {
    await t.step(name, async () => {
      const up = rawUpstream((origin) =>
        "HTTP/1.1 302 Found\r\n" + lines(origin).map((l) => `${header}: ${l}\r\n`).join("") +
        "Content-Length: 0\r\n\r\n"
      );
      const edge = startVestibule(oneRegion(up.url));
      try {
        const answer = await rawRequest(
          edge.port,
          "GET /login HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
        );
        assert.match(answer, /^HTTP\/1\.1 302 /);
        // The first line, pointed at the public host; never the origin's address.
        assert.deepEqual(headerLines(answer, header), expected);
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
});

Deno.test("origin address leak: every Domain attribute of a cookie that names the origin is rewritten", async () => {
  const up = startUpstream(() =>
    new Response("ok", {
      headers: { "set-cookie": "sid=1; Domain=other.example; Path=/; Domain=127.0.0.1" },
    })
  );
  const edge = startVestibule(oneRegion(up.url));
  try {
    const answer = await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    );
    // Browsers use the last Domain attribute (RFC 6265 5.3).
    assert.match(
      answer,
      /\r\nset-cookie: sid=1; Domain=other\.example; Path=\/; Domain=app\.example\.com\r\n/i,
    );
    assert.doesNotMatch(answer, /127\.0\.0\.1/);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("origin address leak: a cookie Domain written with spaces around '=' is rewritten too", async () => {
  const up = startUpstream(() =>
    new Response("ok", { headers: { "set-cookie": "sid=1; Domain = 127.0.0.1; Path=/" } })
  );
  const edge = startVestibule(oneRegion(up.url));
  try {
    const answer = await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /\r\nset-cookie: sid=1; Domain=app\.example\.com; Path=\/\r\n/i);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("forwarding: hop-by-hop response headers are dropped even when nothing else changes", async () => {
  const up = rawUpstream(() =>
    "HTTP/1.1 200 OK\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n" +
    "Proxy-Authorization: Basic c2VjcmV0\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nhi"
  );
  const edge = startVestibule(oneRegion(up.url));
  try {
    const answer = (await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )).toLowerCase();
    assert.doesNotMatch(answer, /proxy-connection:/);
    assert.doesNotMatch(answer, /\r\nte:/);
    assert.doesNotMatch(answer, /proxy-authorization:/);
    assert.match(answer, /\r\nx-kept: 1\r\n/);
    assert.ok(answer.endsWith("\r\n\r\nhi"));
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

/**
 * vestibule with one redirect rule for `^/help/(.*)$` (its region is never called), with the
 * rule's `status` and the file's `paths` when given.
 */
const withRedirect = (
  location: string,
  { status, paths }: { status?: number; paths?: Record<string, boolean> } = {},
) =>
  startVestibule({
    regions: { us: { origin: "http://127.0.0.1:1" } },
    default_region: "us",
    ...(paths ? { paths } : {}),
    rules: [{
      name: "help",
      type: "global",
      match: { path: "^/help/(.*)$" },
      redirect: status === undefined ? { location } : { location, status },
    }],
  });

Deno.test("signed links: a redirect rule keeps the query exactly as the client sent it", async (t) => {
  const edge = withRedirect("https://help.example.com/$1");
  try {
    await t.step("as fetch sends it", async () => {
      const res = await fetch(`${edge.url}/help/x?next=/a/b&flag&sig=abc~`, {
        redirect: "manual",
      });
      await res.body?.cancel();
      assert.equal(
        res.headers.get("location"),
        "https://help.example.com/x?next=/a/b&flag&sig=abc~",
      );
    });
    await t.step("with a #fragment in the request target after it", async () => {
      const answer = await rawRequest(
        edge.port,
        "GET /help/x?lang=fr&sig=abc#top HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 302/);
      assert.match(answer, /\r\nlocation: https:\/\/help\.example\.com\/x\?lang=fr&sig=abc\r\n/i);
    });
  } finally {
    await edge.close();
  }
});

Deno.test("global route: a redirect whose location has its own query does not get the client's", async () => {
  const edge = withRedirect("https://help.example.com/$1?src=edge");
  try {
    const res = await fetch(`${edge.url}/help/a?lang=fr`, { redirect: "manual" });
    await res.body?.cancel();
    assert.equal(res.headers.get("location"), "https://help.example.com/a?src=edge");
  } finally {
    await edge.close();
  }
});

Deno.test("path splicing through Host: a Host with '/', '?' or '#' is refused, not glued to the path", async (t) => {
  const up = startUpstream();
  const lines: string[] = [];
  const edge = startVestibule(oneRegion(up.url), { deps: { log: (line) => lines.push(line) } });
  try {
    for (const host of ["evil.example/zz", "a?b", "a#b", "x@evil.example"]) {
      await t.step(host, async () => {
        const answer = await rawRequest(
          edge.port,
          `GET /admin HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
        );
        assert.match(answer, /^HTTP\/1\.1 400 /);
        assert.match(answer, /"error":"bad_host"/);
      });
    }
    assert.equal(up.received.length, 0);
    assert.ok(lines.every((line) => JSON.parse(line).error === "bad_host"));
    for (const host of ["app.example.com", "app.example.com:8443", "10.0.0.5", "[::1]:8000"]) {
      await rawRequest(
        edge.port,
        `GET /admin HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
    }
    assert.deepEqual(up.received.map((r) => r.path), ["/admin", "/admin", "/admin", "/admin"]);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("open redirect: path groups cannot move a redirect rule's target to another host", async (t) => {
  const edge = startVestibule({
    regions: { us: { origin: "http://127.0.0.1:1" } },
    default_region: "us",
    rules: [
      {
        name: "glued",
        type: "global",
        match: { path: "^/help(.*)$" },
        redirect: { location: "https://help.example.com$1" },
      },
      {
        name: "relative",
        type: "global",
        match: { path: "^/old(/.*)$" },
        redirect: { location: "$1" },
      },
      {
        name: "shipped",
        type: "global",
        match: { path: "^/docs/(.*)$" },
        redirect: { location: "https://docs.example.com/$1" },
      },
      {
        name: "protocol-relative",
        type: "global",
        match: { path: "^/pr(.*)$" },
        redirect: { location: "//help.example.com$1" },
      },
      {
        name: "host-leading-group",
        type: "global",
        match: { path: "^/tenant/(.*)$" },
        redirect: { location: "https://$1.help.example.com/" },
      },
      {
        name: "host-inner-group",
        type: "global",
        match: { path: "^/inner/(.*)$" },
        redirect: { location: "https://help-$1.example.com/" },
      },
      {
        name: "host-then-path-group",
        type: "global",
        match: { path: "^/go/([a-z]+)(.*)$" },
        redirect: { location: "https://$1.example.com$2" },
      },
      {
        name: "protocol-relative-host-group",
        type: "global",
        match: { path: "^/rel/([a-z]+)$" },
        redirect: { location: "//$1.example.com/" },
      },
    ],
    // So that an escaped backslash reaches the rules below.
    paths: { allow_encoded_slashes: true },
  });
  const location = async (path: string) => {
    const res = await fetch(edge.url + path, {
      redirect: "manual",
      headers: { accept: "application/json" },
    });
    const body = await res.text();
    return { status: res.status, location: res.headers.get("location"), body };
  };
  try {
    for (
      const path of [
        "/help@evil.example",
        "/help.evil.example/",
        "/pr@evil.example",
        // A group inside the host fills host characters only: no `/`, `?` or `@` that would
        // leave the template's own domain behind.
        "/tenant/evil.example/x",
        "/tenant/evil.example%3F",
        "/inner/x.evil.example/",
        // A group ending the authority must add nothing to it (it was not checked at all).
        "/go/www@evil.example/",
        "/go/www.evil.example/",
      ]
    ) {
      await t.step(`refused: ${path}`, async () => {
        const got = await location(path);
        assert.equal(got.status, 400, `${path} → ${got.location}`);
        assert.match(got.body, /"error":"redirect_refused"/);
      });
    }
    await t.step(
      "merged before any rule reads them: //evil.example and \\evil.example",
      async () => {
        // `\` is `/` to the URL parser, and runs of `/` are merged: the group holds no `//`.
        assert.equal((await location("/old//evil.example")).location, "/evil.example");
        assert.equal((await location("/old/\\evil.example")).location, "/evil.example");
        assert.equal(
          (await location("/docs//evil.example")).location,
          "https://docs.example.com/evil.example",
        );
      },
    );
    await t.step("kept: the same host, whatever the groups", async () => {
      assert.equal((await location("/help/billing")).location, "https://help.example.com/billing");
      assert.equal((await location("/old/new-page")).location, "/new-page");
      assert.equal((await location("/pr/billing")).location, "//help.example.com/billing");
      assert.equal((await location("/tenant/acme")).location, "https://acme.help.example.com/");
      // Its prefix `https://help-` parsed as a host of its own: every request was refused.
      assert.equal((await location("/inner/acme")).location, "https://help-acme.example.com/");
      assert.equal((await location("/go/www/docs")).location, "https://www.example.com/docs");
      // No base made a protocol-relative location unparsable: every request was refused.
      assert.equal((await location("/rel/acme")).location, "//acme.example.com/");
      // An escaped backslash is a path character to a browser, not a slash.
      assert.equal((await location("/old/%5Cevil.example")).location, "/%5Cevil.example");
    });
  } finally {
    await edge.close();
  }
});

Deno.test("a Host no URL can hold (port 99999, a bad IPv6 literal) is 400 bad_host, not a 500", async (t) => {
  const up = startUpstream();
  const edge = startVestibule(oneRegion(up.url));
  try {
    for (const host of ["app.example.com:99999", "[zz]", "[fe80::1%25eth0]"]) {
      await t.step(host, async () => {
        const answer = await rawRequest(
          edge.port,
          `GET /x HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
        );
        assert.match(answer, /^HTTP\/1\.1 400 /, answer.split("\r\n")[0]);
        assert.match(answer, /"error":"bad_host"/);
      });
    }
    assert.equal(up.received.length, 0);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("signed links: a redirect rule keeps a quote in the query as the client sent it", async () => {
  const edge = withRedirect("https://help.example.com/$1");
  try {
    const answer = await rawRequest(
      edge.port,
      "GET /help/x?file=O'Brien.pdf&sig=abc HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert.match(
      answer,
      /\r\nlocation: https:\/\/help\.example\.com\/x\?file=O'Brien\.pdf&sig=abc\r\n/i,
    );
  } finally {
    await edge.close();
  }
});

Deno.test("redirect rule with a fragment: the client's query goes before the '#', not into it", async () => {
  const edge = withRedirect("https://help.example.com/$1#top");
  try {
    const res = await fetch(`${edge.url}/help/billing?lang=fr`, { redirect: "manual" });
    await res.body?.cancel();
    assert.equal(res.headers.get("location"), "https://help.example.com/billing?lang=fr#top");
  } finally {
    await edge.close();
  }
});

Deno.test("redirect rule: a path group in the template's #fragment, after its ?query, is left as written", async () => {
  // A single-page app's hash route: `&` and `=` there are no query's, so they are not escaped.
  const edge = withRedirect("https://new.example.com/app?from=old#/view/$1");
  try {
    const res = await fetch(`${edge.url}/help/a=1&b=2`, { redirect: "manual" });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "https://new.example.com/app?from=old#/view/a=1&b=2");
  } finally {
    await edge.close();
  }
});

Deno.test("compression: the client's own Accept-Encoding decides what it gets back", async (t) => {
  const text = "hello compressed world ".repeat(200);
  await t.step(
    "'*, gzip;q=0' refuses gzip although '*' comes first (RFC 9110 12.5.3)",
    async () => {
      const br = new Uint8Array(brotliCompressSync(new TextEncoder().encode(text)));
      const up = startUpstream(() =>
        new Response(br, { headers: { "content-type": "text/plain", "content-encoding": "br" } })
      );
      const edge = startVestibule(oneRegion(up.url));
      try {
        const answer = await rawRequest(
          edge.port,
          "GET / HTTP/1.1\r\nHost: app\r\nAccept-Encoding: *, gzip;q=0\r\nConnection: close\r\n\r\n",
        );
        assert.doesNotMatch(answerHead(answer), /content-encoding: gzip/);
        assert.equal(answerBody(answer), text, "sent plain");
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    },
  );
  await t.step(
    "deflate and zstd, which fetch does not decode, reach the client as sent",
    async () => {
      for (
        const [coding, bytes] of [
          ["deflate", deflateSync(new TextEncoder().encode(text))],
          ["zstd", zstdCompressSync(new TextEncoder().encode(text))],
        ] as const
      ) {
        const sent = new Uint8Array(bytes);
        const up = startUpstream(() =>
          new Response(sent, {
            headers: { "content-type": "text/plain", "content-encoding": coding },
          })
        );
        const edge = startVestibule(oneRegion(up.url));
        try {
          // What Chrome and Firefox send; Deno's fetch on this side decodes gzip and br only too.
          const res = await fetch(`${edge.url}/f`, {
            headers: { "accept-encoding": "gzip, deflate, br, zstd" },
          });
          assert.equal(res.headers.get("content-encoding"), coding);
          assert.deepEqual(new Uint8Array(await res.arrayBuffer()), sent, coding);
        } finally {
          await Promise.all([edge.close(), up.close()]);
        }
      }
    },
  );
  const gz = new Uint8Array(gzipSync(new TextEncoder().encode(text)));
  /** An origin that always answers gzip, for which the rules file sets `accept-encoding`. */
  const gzipOrigin = (acceptEncoding: string) => {
    const up = startUpstream(() =>
      new Response(gz, { headers: { "content-type": "text/plain", "content-encoding": "gzip" } })
    );
    const edge = startVestibule({
      regions: { us: { origin: up.url, headers: { "accept-encoding": acceptEncoding } } },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    });
    return { up, edge };
  };
  await t.step(
    "'Identity' set by the rules file: fetch decodes nothing, gzip passes as sent",
    async () => {
      const { up, edge } = gzipOrigin("Identity");
      try {
        const res = await fetch(`${edge.url}/f`, { headers: { "accept-encoding": "identity" } });
        assert.equal(res.headers.get("content-encoding"), "gzip");
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), gz);
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    },
  );
  await t.step(
    "an Accept-Encoding the rules file sets for the origin is not the client's",
    async () => {
      const { up, edge } = gzipOrigin("gzip");
      try {
        const answer = await rawRequest(
          edge.port,
          "GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
        );
        assert.equal(up.received[0].headers.get("accept-encoding"), "gzip");
        assert.doesNotMatch(answerHead(answer), /content-encoding: gzip/);
        assert.equal(
          answerBody(answer),
          text,
          "sent plain to a client that asked for no compression",
        );
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    },
  );
  await t.step(
    "a body vestibule re-compressed does not advertise byte ranges it cannot serve",
    async () => {
      // A precompressed asset (nginx gzip_static): ranges are offsets into the origin's gzip,
      // not into vestibule's, and a range request goes upstream as identity.
      const up = startUpstream(() =>
        new Response(gz, {
          headers: {
            "content-type": "text/plain",
            "content-encoding": "gzip",
            "accept-ranges": "bytes",
          },
        })
      );
      const edge = startVestibule(oneRegion(up.url));
      try {
        const answer = await rawRequest(
          edge.port,
          "GET / HTTP/1.1\r\nHost: app\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        );
        assert.match(answerHead(answer), /content-encoding: gzip/);
        assert.doesNotMatch(answerHead(answer), /accept-ranges/);
        // Sent plain, the bytes are the identity representation a range request reaches.
        const plain = await rawRequest(
          edge.port,
          "GET / HTTP/1.1\r\nHost: app\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n",
        );
        assert.equal(answerBody(plain), text);
        assert.match(answerHead(plain), /accept-ranges: bytes/);
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    },
  );
});

Deno.test("origin address leak: an X-Forwarded-Host the URL parser refuses is 400 bad_host, not a Location left unrewritten", async () => {
  const up = startUpstream((req) =>
    new Response(null, { status: 302, headers: { location: `http://${new URL(req.url).host}/x` } })
  );
  const edge = startVestibule(oneRegion(up.url, { trusted_proxy_hops: 1 }));
  try {
    const answer = await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: 10.0.0.5\r\nX-Forwarded-Host: app.example.com:99999\r\n" +
        "Connection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /bad_host/);
    // With an absolute-form target the URL is the client's; the Host must parse as well.
    const absolute = await rawRequest(
      edge.port,
      `GET http://127.0.0.1:${edge.port}/ HTTP/1.1\r\nHost: 999.999.999.999\r\n` +
        "Connection: close\r\n\r\n",
    );
    assert.match(absolute, /^HTTP\/1\.1 400 /);
    assert.equal(up.received.length, 0);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("a 206 slice of a gzip file reaches the client as the origin sent it, even when the rules file sets accept-encoding", async () => {
  // Text that does not compress to nothing (a minified bundle, say).
  let seed = 7;
  const text = Array.from({ length: 4000 }, () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return String.fromCharCode(33 + (seed % 90));
  }).join("");
  const gz = new Uint8Array(
    await new Response(
      new Blob([text]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  // nginx gzip_static with ranges: the offsets are into the .gz file it serves.
  const up = startUpstream((req) => {
    const gzip = /gzip/.test(req.headers.get("accept-encoding") ?? "");
    const bytes = gzip ? gz : new TextEncoder().encode(text);
    const headers: Record<string, string> = {
      "content-type": "application/javascript",
      "accept-ranges": "bytes",
    };
    if (gzip) headers["content-encoding"] = "gzip";
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get("range") ?? "");
    if (!range) return new Response(bytes, { headers });
    const [from, to] = [Number(range[1]), Number(range[2])];
    headers["content-range"] = `bytes ${from}-${to}/${bytes.length}`;
    return new Response(bytes.slice(from, to + 1), { status: 206, headers });
  });
  // The README's own example of an origin the rules file asks for gzip.
  const edge = startVestibule({
    regions: { us: { origin: up.url, headers: { "accept-encoding": "gzip" } } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    // A download manager resuming: Range on the raw socket, so nothing decodes the answer.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
    await conn.write(new TextEncoder().encode(
      "GET /app.js HTTP/1.1\r\nHost: app\r\nRange: bytes=100-199\r\n" +
        "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    ));
    const raw = new Uint8Array(await new Response(conn.readable).arrayBuffer());
    const split = raw.findIndex((_, i) =>
      raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10
    );
    const head = new TextDecoder().decode(raw.subarray(0, split));
    const status = Number(head.split(" ")[1]);
    const contentRange = /^content-range: (.*)$/im.exec(head)?.[1] ?? null;
    const length = Number(/^content-length: (\d+)$/im.exec(head)?.[1] ?? NaN);
    const body = raw.subarray(split + 4);
    // Whatever encoding it carries, a 206 body must be the bytes its Content-Range names: the
    // range goes upstream as identity, so the plain file's.
    const plain = new TextEncoder().encode(text);
    assert.equal(up.received.at(-1)!.headers.get("accept-encoding"), "identity");
    assert.doesNotMatch(head, /^content-encoding/im);
    assert.deepEqual(
      { status, contentRange, length, sameBytes: body.every((b, i) => b === plain[100 + i]) },
      {
        status: 206,
        contentRange: `bytes 100-199/${plain.length}`,
        length: 100,
        sameBytes: true,
      },
      `${head}\n\nbody as sent (${body.length} bytes): ${[...body.subarray(0, 40)]}`,
    );
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("an upstream Location or Refresh in UTF-8 bytes is rewritten to the same page, not its mojibake", async (t) => {
  // Go's net/http and PHP's header() write a non-ASCII Location as its UTF-8 bytes, which a
  // browser reads as UTF-8; `fetch` hands them over one character per byte.
  for (const header of ["Location", "Refresh"]) {
    await t.step(header, async () => {
      const up = rawUpstream((url) =>
        `HTTP/1.1 302 Found\r\n${header}: ${header === "Refresh" ? "0; url=" : ""}` +
        `${url}/über?q=é\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`
      );
      const edge = startVestibule(oneRegion(up.url));
      try {
        const answer = await rawRequest(
          edge.port,
          "GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        );
        const line = answer.split("\r\n")
          .find((l) => l.toLowerCase().startsWith(`${header.toLowerCase()}:`)) ?? "(none)";
        assert.equal(
          line.slice(line.indexOf("http")),
          "http://app.example.com/%C3%BCber?q=%C3%A9",
          line,
        );
      } finally {
        await Promise.all([edge.close(), up.close()]);
      }
    });
  }
});

Deno.test("cache poisoning: a body vestibule decoded says Vary: Accept-Encoding, whichever encoding the client gets", async (t) => {
  // A shared cache in front keys on Vary: without it, the gzip bytes one client got are served
  // to the next client that accepts no gzip (and the plain bytes to one that asked for gzip).
  const gz = new Uint8Array(gzipSync(new TextEncoder().encode("x".repeat(5000))));
  const up = startUpstream(() =>
    new Response(gz, { headers: { "content-encoding": "gzip", "content-type": "text/plain" } })
  );
  const edge = startVestibule(oneRegion(up.url));
  try {
    // "br": fetch asks with it and decodes the gzip the origin sends; the client gets plain bytes.
    for (const acceptEncoding of ["gzip", "br"]) {
      await t.step(`Accept-Encoding: ${acceptEncoding}`, async () => {
        const answer = await rawRequest(
          edge.port,
          `GET /page HTTP/1.1\r\nHost: app.example.com\r\nAccept-Encoding: ${acceptEncoding}\r\n` +
            "Connection: close\r\n\r\n",
        );
        assert.match(answer, /\r\nvary: accept-encoding\r\n/i);
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("behind two trusted proxies, the X-Forwarded-Host and -Proto the outer one wrote count, not the inner one's", async () => {
  const up = startUpstream((req) =>
    new Response(null, { status: 302, headers: { location: `${new URL(req.url).origin}/next` } })
  );
  const edge = startVestibule(oneRegion(up.url, { trusted_proxy_hops: 2 }));
  try {
    // The CDN saw the client's host and scheme; the load balancer behind it appended what it saw.
    const answer = await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: 10.0.0.5\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.2\r\n" +
        "X-Forwarded-Host: evil.example, app.example.com, lb.internal\r\n" +
        "X-Forwarded-Proto: http, https, http\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /\r\nlocation: https:\/\/app\.example\.com\/next\r\n/i);
    assert.equal(up.received[0].headers.get("x-forwarded-host"), "app.example.com");
    assert.equal(up.received[0].headers.get("x-forwarded-proto"), "https");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("behind a trusted proxy, an X-Forwarded-Proto other than http or https is not the scheme", async () => {
  const up = startUpstream((req) =>
    new Response(null, { status: 302, headers: { location: `${new URL(req.url).origin}/next` } })
  );
  const edge = startVestibule(oneRegion(up.url, { trusted_proxy_hops: 1 }));
  try {
    // A WebSocket-aware proxy writes `ws`; a Location built on it would send browsers nowhere.
    const answer = await rawRequest(
      edge.port,
      "GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-Proto: ws\r\n" +
        "Connection: close\r\n\r\n",
    );
    assert.match(answer, /\r\nlocation: http:\/\/app\.example\.com\/next\r\n/i);
    assert.equal(up.received[0].headers.get("x-forwarded-proto"), "http");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("open redirect: a group cannot leave the template's host through userinfo or the other scheme", async (t) => {
  const edge = startVestibule({
    regions: { us: { origin: "http://127.0.0.1:1" } },
    default_region: "us",
    rules: [
      {
        name: "host-inner-group",
        type: "global",
        match: { path: "^/inner/(.*)$" },
        redirect: { location: "https://help-$1.example.com/" },
      },
      {
        name: "bare-relative",
        type: "global",
        match: { path: "^/r/(.*)$" },
        redirect: { location: "$1" },
      },
    ],
  });
  const location = async (path: string) => {
    const res = await fetch(edge.url + path, {
      redirect: "manual",
      headers: { accept: "application/json" },
    });
    return { status: res.status, location: res.headers.get("location"), body: await res.text() };
  };
  try {
    for (
      const path of [
        // `https://help-a@evil.example.com/` is evil.example.com: `help-` is only userinfo.
        "/inner/a@evil",
        // On an https page `https:evil.example` is a relative path; on an http page (this
        // listener) it is https://evil.example/.
        "/r/https:evil.example",
      ]
    ) {
      await t.step(`refused: ${path}`, async () => {
        const got = await location(path);
        assert.equal(got.status, 400, `${path} → ${got.location}`);
        assert.match(got.body, /"error":"redirect_refused"/);
      });
    }
    await t.step("kept: the same host", async () => {
      assert.equal((await location("/inner/acme")).location, "https://help-acme.example.com/");
      assert.equal((await location("/r/new-page")).location, "new-page");
    });
  } finally {
    await edge.close();
  }
});

Deno.test("redirect rule: a group that matched nothing leaves nothing in the location", async () => {
  // `^/docs(/.*)?$` on `/docs`: `$1` did not take part, so the location must not carry "$1"
  // or "undefined" to the new site.
  const edge = startVestibule({
    regions: { us: { origin: "http://127.0.0.1:1" } },
    default_region: "us",
    rules: [{
      name: "docs",
      type: "global",
      match: { path: "^/docs(/.*)?$" },
      redirect: { location: "https://docs.example.com/v2$1" },
    }],
  });
  try {
    for (
      const [path, location] of [
        ["/docs?lang=fr", "https://docs.example.com/v2?lang=fr"],
        ["/docs/a?lang=fr", "https://docs.example.com/v2/a?lang=fr"],
      ]
    ) {
      const res = await fetch(`${edge.url}${path}`, { redirect: "manual" });
      await res.body?.cancel();
      assert.equal(res.status, 302, path);
      assert.equal(res.headers.get("location"), location, path);
    }
  } finally {
    await edge.close();
  }
});

Deno.test("redirect rule: a query with raw UTF-8 goes on percent-encoded, not as mojibake", async () => {
  const edge = withRedirect("https://help.example.com/$1");
  try {
    const answer = await rawRequest(
      edge.port,
      "GET /help/x?q=caf\u00e9 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /\r\nlocation: https:\/\/help\.example\.com\/x\?q=caf%C3%A9\r\n/i);
  } finally {
    await edge.close();
  }
});

Deno.test("hop-by-hop leak: Keep-Alive and Trailer, not named in Connection, go neither way", async (t) => {
  const up = startUpstream();
  const edge = startVestibule(oneRegion(up.url));
  const raw = rawUpstream(() =>
    "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nTrailer: x-checksum\r\n" +
    "X-Kept: 1\r\nContent-Length: 2\r\n\r\nhi"
  );
  const rawEdge = startVestibule(oneRegion(raw.url));
  try {
    await t.step("client to upstream", async () => {
      await rawRequest(
        edge.port,
        "GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\nTrailer: x-checksum\r\n" +
          "X-Kept: 1\r\nConnection: close\r\n\r\n",
      );
      const h = up.received[0].headers;
      assert.equal(h.get("keep-alive"), null);
      assert.equal(h.get("trailer"), null);
      assert.equal(h.get("x-kept"), "1");
    });
    await t.step("upstream to client", async () => {
      const answer = (await rawRequest(
        rawEdge.port,
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      )).toLowerCase();
      assert.doesNotMatch(answer, /\r\nkeep-alive:/);
      assert.doesNotMatch(answer, /\r\ntrailer:/);
      assert.match(answer, /\r\nx-kept: 1\r\n/);
      assert.ok(answer.endsWith("\r\n\r\nhi"));
    });
  } finally {
    await Promise.all([edge.close(), up.close(), rawEdge.close(), raw.close()]);
  }
});

// A bodiless answer vestibule must copy to change its headers stays bodiless: Response refuses a
// body, even an empty stream, for 204 and 304.
Deno.test("bodiless answers: a 204 or 304 that vestibule must copy (Set-Cookie, Connection) keeps its status and headers", async (t) => {
  const up = startUpstream((req) => {
    const status = new URL(req.url).pathname === "/not-modified" ? 304 : 204;
    const headers = new Headers({ etag: '"v1"', connection: "x-hop", "x-hop": "1" });
    headers.append("set-cookie", "seen=1; Path=/");
    return new Response(null, { status, headers });
  });
  const edge = startVestibule(oneRegion(up.url));
  try {
    for (const [path, status] of [["/saved", 204], ["/not-modified", 304]] as const) {
      await t.step(`${status}`, async () => {
        const res = await fetch(`${edge.url}${path}`);
        assert.equal(res.status, status);
        assert.equal(await res.text(), "");
        assert.deepEqual(res.headers.getSetCookie(), ["seen=1; Path=/"]);
        assert.equal(res.headers.get("etag"), '"v1"');
        assert.equal(res.headers.get("x-hop"), null);
      });
    }
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

// Hazard: a help centre's search moves to another site, `/help/search/(.*)` to
// `https://help.example.com/search?q=$1`. A path keeps `&`, `+` and `=` as they were typed
// (they mean nothing there), but in a query they split parameters and stand for a space, so
// `/help/search/Q&A` searched for "Q" (with a stray `A` parameter) and `/help/search/c++` for
// "c  ". A path group substituted into the location's query must stay one value.
Deno.test("redirectLocation() keeps a path group one query value: & + = are percent-encoded after the template's ?", async (t) => {
  const location = async (template: string, path: string) => {
    const edge = withRedirect(template);
    try {
      const res = await fetch(`${edge.url}${path}`, { redirect: "manual" });
      await res.body?.cancel();
      assert.equal(res.status, 302);
      return res.headers.get("location");
    } finally {
      await edge.close();
    }
  };
  const search = "https://help.example.com/search?q=$1&src=app#results";
  await t.step("a group in the query is one value", async () => {
    const url = new URL((await location(search, "/help/Q&A=1"))!);
    assert.deepEqual([...url.searchParams], [["q", "Q&A=1"], ["src", "app"]]);
    assert.equal(url.hash, "#results");
  });
  await t.step("a + in the group is a plus, not a space", async () => {
    const url = new URL((await location(search, "/help/c++"))!);
    assert.equal(url.searchParams.get("q"), "c++");
  });
  await t.step("a group in the path is left as the client wrote it", async () => {
    assert.equal(
      await location("https://help.example.com/$1", "/help/a+b&c=d"),
      "https://help.example.com/a+b&c=d",
    );
  });
});

Deno.test("redirect rule: a template without $N groups redirects (not redirect_refused)", async () => {
  const edge = withRedirect("https://new.example.com/");
  try {
    const res = await fetch(`${edge.url}/help/x?lang=fr`, { redirect: "manual" });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "https://new.example.com/?lang=fr");
  } finally {
    await edge.close();
  }
});

Deno.test("redirect rule: status 308 loads and answers 308", async () => {
  const edge = withRedirect("https://help.example.com/$1", { status: 308 });
  try {
    const res = await fetch(`${edge.url}/help/x`, { redirect: "manual" });
    await res.body?.cancel();
    assert.equal(res.status, 308);
    assert.equal(res.headers.get("location"), "https://help.example.com/x");
  } finally {
    await edge.close();
  }
});

Deno.test("redirect rule: a path group put in a query value has its ';' escaped (paths.allow_semicolons)", async () => {
  const edge = withRedirect("https://help.example.com/search?q=$1", {
    paths: { allow_semicolons: true },
  });
  try {
    const res = await fetch(`${edge.url}/help/a;b`, { redirect: "manual" });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "https://help.example.com/search?q=a%3Bb");
  } finally {
    await edge.close();
  }
});
