import assert from "node:assert/strict";
import { explainRequest } from "./explain.ts";
import { formatExplanation } from "./explain_text.ts";
import { parseRules } from "./load_rules.ts";

const NO_IP_DATABASE =
  "geo.ip_lookup is on but no IP database is loaded here: the IP was not looked up";

const ENV: Record<string, string> = {
  AU_ORIGIN: "http://au.test:8001",
  AU_SECRET: "au-secret-value",
  US_ORIGIN: "http://us.test:8002",
  WEBSITE_ORIGIN: "http://website.test",
};

/** The shipped rules.json, so these tests also pin down what operators get. */
const config = parseRules(
  await Deno.readTextFile(new URL("../rules.json", import.meta.url)),
  { env: (name) => ENV[name] },
);

const PIN = "__Host-vestibule-region";

Deno.test("explainRequest() follows the pin header and forwards every cookie but the pin", async () => {
  const e = await explainRequest({
    method: "GET",
    url: "https://app.example.com/dashboard",
    headers: {
      "x-vestibule-region": "AU",
      cookie: `sessionid=s1; ${PIN}=us; csrftoken=c1`,
    },
  }, config);
  assert.equal(e.rule, "app");
  assert.equal(e.type, "regional");
  assert.equal(e.method, "GET");
  assert.equal(e.region, "au");
  assert.equal(e.reason, "pin header");
  assert.deepEqual(e.tried, [
    "website",
    "old-help",
    "login",
    "signup",
    "join-class",
    "staff-switch-region",
  ]);
  assert.equal(e.targets.length, 1);
  const [target] = e.targets;
  assert.deepEqual([target.id, target.origin], ["au", "http://au.test:8001"]);
  assert.deepEqual(target.forward.cookies.forwarded, ["sessionid", "csrftoken"]);
  assert.deepEqual(target.forward.cookies.stripped, [{ name: PIN, reason: "pin cookie" }]);
  assert.deepEqual(target.forward.headers.stripped, [
    { name: "x-vestibule-region", reason: "pin header" },
  ]);
  assert.ok(e.notes.includes(`The pin cookie "${PIN}" is not read: the pin header wins`));
});

Deno.test("explainRequest() follows the pin cookie", async () => {
  const e = await explainRequest({
    method: "GET",
    url: "https://app.example.com/",
    headers: { cookie: `${PIN}=au; sessionid=s1`, "cf-ipcountry": "US" },
  }, config);
  assert.equal(e.region, "au");
  assert.equal(e.reason, "pin cookie");
  assert.deepEqual(e.targets[0].forward.cookies.forwarded, ["sessionid"]);
});

Deno.test("explainRequest() assumes a region from the geo header without pinning", async () => {
  const e = await explainRequest({
    method: "GET",
    url: "https://app.example.com/",
    headers: { "cf-ipcountry": "nz", cookie: "sessionid=s1; csrftoken=c1" },
  }, config);
  assert.equal(e.region, "au");
  assert.equal(e.reason, "geo header");
  assert.equal(e.country, "NZ");
  assert.equal(e.pin, undefined);
  assert.deepEqual(e.targets[0].forward.cookies.forwarded, ["csrftoken"]);
  assert.deepEqual(e.targets[0].forward.cookies.stripped, [
    { name: "sessionid", reason: "not in forward_cookies" },
  ]);
  assert.ok(e.notes.includes("Not pinned: only forward_cookies are sent"));
});

Deno.test("explainRequest() falls back to the default region and ignores an unknown pin", async () => {
  const e = await explainRequest({
    method: "GET",
    url: "https://app.example.com/",
    headers: { "x-vestibule-region": "eu", cookie: `${PIN}=mars`, "cf-ipcountry": "FR" },
  }, config);
  assert.equal(e.region, "us");
  assert.equal(e.reason, "default");
  assert.equal(e.country, "FR"); // the CDN's word, mapped to no region
  assert.deepEqual(e.notes.slice(0, 2), [
    'The pin header "x-vestibule-region" does not name a region: ignored',
    `The pin cookie "${PIN}" does not name a region: ignored`,
  ]);
});

Deno.test("explainRequest() takes the region from region_from over the pin", async () => {
  const e = await explainRequest({
    method: "POST",
    url: "https://app.example.com/staff/switch-region/au",
    headers: { cookie: `${PIN}=us; sessionid=s1` },
  }, config);
  assert.equal(e.rule, "staff-switch-region");
  assert.equal(e.region, "au");
  assert.equal(e.reason, "region_from");
  assert.deepEqual(e.targets[0].forward.cookies.forwarded, []);
  assert.ok(e.notes.includes('Pins the browser to "au" when the answer matches pin_on'));
  assert.ok(
    e.notes.includes('The request is pinned to "us", not "au": only forward_cookies are sent'),
  );
});

Deno.test("explainRequest() says pin_on does not apply when the request names no known region", async () => {
  const e = await explainRequest({
    method: "POST",
    url: "https://app.example.com/staff/switch-region/mars",
  }, config);
  assert.equal(e.rule, "staff-switch-region");
  assert.equal(e.reason, "default");
  assert.ok(
    e.notes.includes("The request names no region: pin_on does not apply, nothing is pinned"),
  );
  assert.ok(!e.notes.some((note) => note.startsWith("Pins the browser")));
});

Deno.test("explainRequest() broadcasts a JSON body to every region", async () => {
  const e = await explainRequest({
    method: "POST",
    url: "https://app.example.com/graphql",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ operationName: "JoinClass", variables: { code: "x" } }),
  }, config);
  assert.equal(e.rule, "join-class");
  assert.equal(e.type, "broadcast");
  assert.equal(e.reason, "broadcast");
  assert.deepEqual(e.regions, ["au", "us"]);
  assert.deepEqual(e.targets.map((t) => t.id), ["au", "us"]);
  assert.deepEqual(e.targets.map((t) => t.forward.headers.fromRules), [["x-origin-secret"], []]);
  assert.deepEqual(e.notes.slice(1, 3), [
    "If several regions succeed, the client gets 502 broadcast_ambiguous",
    'If none succeeds, the client gets the best failure (non-5xx first), ties going to "us" (default)',
  ]);
});

Deno.test("explainRequest() sends a GraphQL body that no broadcast rule wants to the app", async () => {
  const e = await explainRequest({
    method: "POST",
    url: "https://app.example.com/graphql",
    body: JSON.stringify({ operationName: "Dashboard" }),
  }, config);
  assert.equal(e.rule, "app");
  assert.deepEqual(e.tried.slice(-3), ["signup", "join-class", "staff-switch-region"]);
});

Deno.test("explainRequest() computes a redirect's Location and contacts nobody", async () => {
  const e = await explainRequest({ method: "GET", url: "/help/billing/refunds?lang=fr" }, config);
  assert.equal(e.rule, "old-help");
  assert.equal(e.location, "https://help.example.com/billing/refunds?lang=fr");
  assert.equal(e.status, 301);
  assert.equal(e.upstream, undefined);
  assert.deepEqual(e.targets, []);
});

Deno.test("explainRequest() shows a redirect the groups would move to another host as refused", async () => {
  const glued = parseRules(
    JSON.stringify({
      regions: { us: { origin: "http://127.0.0.1:1" } },
      default_region: "us",
      rules: [{
        name: "help",
        type: "global",
        match: { path: "^/help(.*)$" },
        redirect: { location: "https://help.example.com$1" },
      }],
    }),
    { env: () => undefined },
  );
  const e = await explainRequest({
    method: "GET",
    url: "https://app.example.com/help@evil.example",
  }, glued);
  assert.equal(e.location, undefined);
  assert.deepEqual(e.refused?.code, "redirect_refused");
  assert.equal(e.refused?.status, 400);
});

Deno.test("explainRequest() proxies a global rule with its cookie whitelist", async () => {
  const e = await explainRequest({
    method: "GET",
    url: "https://www.example.com/pricing",
    headers: { cookie: "django_language=fr; sessionid=s1" },
  }, config);
  assert.equal(e.upstream, "website");
  assert.equal(e.region, undefined);
  assert.equal(e.reason, undefined);
  assert.deepEqual(e.targets[0].forward.cookies.forwarded, ["django_language"]);
});

Deno.test("explainRequest() shows vestibule's own header values and strips hop-by-hop ones", async () => {
  const e = await explainRequest({
    method: "GET",
    url: "http://app.example.com/",
    headers: {
      host: "app.example.com:8080",
      connection: "close, x-debug",
      "x-debug": "1",
      "x-forwarded-for": "10.9.9.9",
      forwarded: "for=10.9.9.9",
      "x-forwarded-ssl": "on",
      "x-real-ip": "10.9.9.9",
      "x-origin-secret": "forged",
      x_origin_secret: "forged",
      x_forwarded_for: "10.9.9.9",
      accept: "text/html",
      "accept-encoding": "gzip",
      "cf-ipcountry": "AU",
    },
    clientIp: "203.0.113.7",
  }, config);
  const { headers } = e.targets[0].forward;
  assert.deepEqual(headers.set, {
    // Deno's fetch adds these two when the client sent none.
    "accept-language": "*",
    "user-agent": `Deno/${Deno.version.deno}`,
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-host": "app.example.com:8080",
    "x-forwarded-proto": "http",
    "x-real-ip": "203.0.113.7",
    "x-request-id": "(new UUID per request)",
    via: "1.1 vestibule",
  });
  assert.deepEqual(headers.forwarded, ["accept", "accept-encoding", "cf-ipcountry"]);
  assert.deepEqual(headers.fromRules, ["x-origin-secret"]);
  assert.deepEqual(headers.stripped, [
    { name: "connection", reason: "hop-by-hop" },
    { name: "forwarded", reason: "not trusted: trusted_proxy_hops is 0" },
    { name: "host", reason: "the upstream gets its own host" },
    { name: "x-debug", reason: "hop-by-hop: named in Connection" },
    { name: "x-forwarded-for", reason: "replaced by vestibule: trusted_proxy_hops is 0" },
    { name: "x-forwarded-ssl", reason: "not trusted: trusted_proxy_hops is 0" },
    { name: "x-origin-secret", reason: "replaced by the rules file's value" },
    { name: "x-real-ip", reason: "replaced by vestibule" },
    {
      name: "x_forwarded_for",
      reason: "other spelling (_ or . for -) of a header vestibule controls",
    },
    {
      name: "x_origin_secret",
      reason: "other spelling (_ or . for -) of a header vestibule controls",
    },
  ]);
});

Deno.test("explainRequest() shows the request id as the router sends it: kept when safe, else new", async () => {
  const explain = (id: string) =>
    explainRequest({
      method: "GET",
      url: "https://app.example.com/",
      headers: { "x-request-id": id },
    }, config)
      .then((e) => e.targets[0].forward.headers);
  const kept = await explain("trace-42");
  assert.ok(kept.forwarded.includes("x-request-id"));
  assert.equal(kept.set["x-request-id"], undefined);
  const replaced = await explain('forged"}');
  assert.equal(replaced.set["x-request-id"], "(new UUID per request)");
  assert.deepEqual(replaced.stripped, [{ name: "x-request-id", reason: "replaced by vestibule" }]);
});

Deno.test("explainRequest() never reveals cookie values or rules-file header values", async () => {
  const e = await explainRequest({
    method: "POST",
    url: "https://app.example.com/accounts/login/",
    headers: {
      cookie: "sessionid=cookie-value-1; csrftoken=cookie-value-2; theme=cookie-value-3",
      "x-vestibule-region": "au",
    },
  }, config);
  assert.equal(e.rule, "login");
  const text = formatExplanation(e);
  const json = JSON.stringify(e);
  for (const output of [text, json]) {
    assert.ok(output.includes("sessionid"), "cookie names are shown");
    assert.doesNotMatch(output, /cookie-value|au-secret-value/);
  }
});

Deno.test("explainRequest() reports a request no rule matches", async () => {
  const partial = parseRules(
    JSON.stringify({
      regions: { us: { origin: "http://us.test" } },
      default_region: "us",
      rules: [{ name: "api", type: "regional", match: { path: "^/api/" } }],
    }),
    { env: () => undefined },
  );
  const e = await explainRequest({ method: "GET", url: "/other" }, partial);
  assert.equal(e.rule, undefined);
  assert.deepEqual(e.tried, ["api"]);
  assert.deepEqual(e.refused, {
    status: 404,
    code: "no_rule",
    message: "No rule matches GET /other",
  });
});

Deno.test("explainRequest() reports a body over body_limit_bytes", async () => {
  const small = parseRules(
    JSON.stringify({
      regions: { us: { origin: "http://us.test" } },
      default_region: "us",
      body_limit_bytes: 8,
      rules: [{
        name: "graphql",
        type: "broadcast",
        match: { body: { regex: "x" } },
        success: { status: "2xx" },
      }],
    }),
    { env: () => undefined },
  );
  const e = await explainRequest({ method: "POST", url: "/", body: "0123456789" }, small);
  assert.equal(e.refused?.status, 413);
  assert.equal(e.refused?.code, "body_too_large");
});

Deno.test("explainRequest() shows the router's refusals of methods and of a GET body", async () => {
  const refused = async (method: string, body?: string) =>
    (await explainRequest({ method, url: "/", body }, config)).refused;
  assert.deepEqual(await refused("get"), {
    status: 400,
    code: "bad_method",
    message: "The method must be upper-case letters, _ or -",
  });
  assert.equal((await refused("TRACE"))?.code, "method_not_allowed");
  assert.deepEqual(await refused("GET", "x"), {
    status: 400,
    code: "body_not_allowed",
    message: "vestibule cannot forward a GET body",
  });
});

Deno.test("explainRequest() refuses a non-http URL as the router does (Deno.serve takes any scheme)", async () => {
  const explained = await explainRequest({ method: "GET", url: "ftp://example.com/" }, config);
  assert.deepEqual(explained.refused, {
    status: 400,
    code: "bad_path",
    message: "The request target is neither a path nor an http(s) URL",
  });
  await assert.rejects(explainRequest({ method: "GET", url: "http://[::1/" }, config), {
    name: "TypeError",
    message: 'Cannot explain "http://[::1/": not a URL or a path',
  });
});

Deno.test("formatExplanation() describes pinned, geo-assumed, default and broadcast requests", async (t) => {
  const text = async (headers: HeadersInit, method = "GET", path = "/x", body?: string) =>
    formatExplanation(
      await explainRequest(
        { method, url: `https://app.example.com${path}`, headers, body },
        config,
      ),
    );
  await t.step("pinned", async () => {
    const out = await text({ cookie: `${PIN}=au; sessionid=s1` });
    assert.match(out, /^Rule: app \(regional, rules\[6\]\)$/m);
    assert.match(out, /^Region: au \(pin cookie\)$/m);
    assert.match(out, /^Sends to: region "au" at http:\/\/au\.test:8001$/m);
    assert.match(out, /^ {2}headers from the rules file: x-origin-secret$/m);
    assert.match(out, /^Cookies forwarded: sessionid$/m);
    assert.match(out, /^Cookies stripped: __Host-vestibule-region \(pin cookie\)$/m);
    assert.match(out, /^ {2}x-forwarded-host: app\.example\.com$/m);
  });
  await t.step("geo-assumed", async () => {
    const out = await text({ "cf-ipcountry": "AU" });
    assert.match(out, /^Region: au \(geo header, country AU\)$/m);
    assert.match(out, /^ {2}- Not pinned: only forward_cookies are sent$/m);
  });
  await t.step("default", async () => {
    const out = await text({});
    assert.match(out, /^Region: us \(default\)$/m);
    assert.match(out, /^Headers forwarded: \(none\)$/m);
  });
  await t.step("broadcast", async () => {
    const json = { "content-type": "application/json" };
    const out = await text(json, "POST", "/graphql", '{"operationName":"Signup"}');
    assert.match(out, /^Rule: signup \(broadcast, rules\[3\]\)$/m);
    assert.match(out, /^Regions: au, us \(broadcast to all regions\)$/m);
    assert.match(out, /^Each region receives:$/m);
    assert.match(out, /^ {2}Headers forwarded: content-type$/m);
    assert.match(out, /^Sends to: region "us" at http:\/\/us\.test:8002$/m);
  });
  await t.step("a body without a Content-Type gets none invented", async () => {
    const out = await text({}, "POST", "/x", '{"operationName":"Signup"}');
    assert.match(out, /^Headers forwarded: \(none\)$/m, "no invented Content-Type");
  });
});

Deno.test("explainRequest() names the preferred region when several may succeed", async () => {
  const multi = parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.test" }, us: { origin: "http://us.test" } },
      default_region: "us",
      rules: [{
        name: "lookup",
        type: "broadcast",
        success: { status: [200] },
        allow_multiple_success: true,
      }],
    }),
    { env: () => undefined },
  );
  const e = await explainRequest({
    method: "GET",
    url: "/",
    headers: { "x-vestibule-region": "au" },
  }, multi);
  assert.equal(
    e.notes[1],
    'If several regions succeed, "au" (pin header) wins, then rules-file order',
  );
});

Deno.test("explainRequest() uses an injected IP lookup and says when there is none", async () => {
  const geo = parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.test" }, us: { origin: "http://us.test" } },
      default_region: "us",
      geo: { countries: { AU: "au" }, ip_lookup: true },
      trusted_proxy_hops: 1,
      rules: [{ name: "app", type: "regional" }],
    }),
    { env: () => undefined },
  );
  const request = {
    method: "GET",
    url: "/",
    headers: { "x-forwarded-for": "198.51.100.7", "x-forwarded-host": "app.example.com" },
    clientIp: "10.0.0.2",
  };
  const seen: string[] = [];
  const looked = await explainRequest(request, geo, {
    countryLookup: (ip) => {
      seen.push(ip);
      return "AU";
    },
  });
  assert.deepEqual(seen, ["198.51.100.7"], "the client behind one trusted hop is looked up");
  assert.deepEqual([looked.region, looked.reason, looked.country], ["au", "geo ip", "AU"]);
  const { headers } = looked.targets[0].forward;
  assert.equal(headers.set["x-forwarded-for"], "198.51.100.7, 10.0.0.2");
  assert.equal(headers.set["x-forwarded-host"], "app.example.com");
  assert.deepEqual(headers.stripped, [], "trusted X-Forwarded-* are kept, not replaced");

  const blind = await explainRequest(request, geo);
  assert.deepEqual([blind.region, blind.reason], ["us", "default"]);
  assert.ok(blind.notes.includes(NO_IP_DATABASE));
});

Deno.test("explainRequest() never prints a URL's credentials", async () => {
  const e = await explainRequest(
    { method: "GET", url: "https://alice:s3cr3t@app.example.com/x" },
    config,
  );
  assert.equal(e.url, "https://***@app.example.com/x");
  await assert.rejects(
    explainRequest({ method: "GET", url: "https://alice:s3cr3t@[bad/x" }, config),
    (error: Error) =>
      !error.message.includes("s3cr3t") && /Cannot explain the URL/.test(error.message),
  );
});

Deno.test("formatExplanation() shows each region's own forwarding when the regions' plans differ", async () => {
  // The client's own X-Origin-Secret: au's rules-file value replaces it, us gets it as sent.
  const out = formatExplanation(
    await explainRequest({
      method: "POST",
      url: "https://app.example.com/graphql",
      headers: { "content-type": "application/json", "x-origin-secret": "forged" },
      body: '{"operationName":"Signup"}',
    }, config),
  );
  assert.doesNotMatch(out, /^Each region receives:$/m);
  assert.match(
    out,
    /^Sends to: region "au" at [^\n]*\n(?: {2}.*\n)* {2}Headers stripped: x-origin-secret \(replaced by the rules file's value\)\nSends to: region "us"/m,
  );
  assert.match(
    out,
    /^Sends to: region "us" at [^\n]*\n(?: {2}.*\n)* {2}Headers forwarded: content-type, x-origin-secret$/m,
  );
});

Deno.test("explainRequest() does not call a header 'replaced' or list a cookie twice when nothing changed", async () => {
  const e = await explainRequest({
    method: "GET",
    url: "http://app.example.com/",
    headers: {
      // The client already sent the values vestibule sets: nothing is replaced.
      "x-real-ip": "203.0.113.7",
      "x-forwarded-proto": "http",
      cookie: "csrftoken=a; csrftoken=b",
    },
    clientIp: "203.0.113.7",
  }, config);
  const { headers, cookies } = e.targets[0].forward;
  assert.equal(headers.set["x-real-ip"], "203.0.113.7");
  assert.equal(headers.set["x-forwarded-proto"], "http");
  assert.ok(!headers.forwarded.includes("x-real-ip"), JSON.stringify(headers.forwarded));
  assert.deepEqual(
    headers.stripped.filter((s) => s.name === "x-real-ip" || s.name === "x-forwarded-proto"),
    [],
  );
  assert.deepEqual(cookies.forwarded, ["csrftoken"]);
  // Cookies are listed under cookies, by name: the Cookie header is not a header entry.
  assert.ok(!headers.forwarded.includes("cookie"), JSON.stringify(headers.forwarded));
  assert.ok(!headers.stripped.some((s) => s.name === "cookie"), JSON.stringify(headers.stripped));
});

Deno.test("explainRequest() lists no Accept-Encoding for a WebSocket upgrade that sent none", async () => {
  // Deno's WebSocket client writes its own handshake: the "identity" fetch would get is not sent.
  const e = await explainRequest({
    method: "GET",
    url: "http://app.example.com/ws",
    headers: {
      host: "app.example.com",
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
    clientIp: "203.0.113.7",
  }, config);
  const { headers } = e.targets[0].forward;
  assert.equal(headers.set["user-agent"], `Deno/${Deno.version.deno}`);
  assert.ok(!("accept-encoding" in headers.set), JSON.stringify(headers.set));
});

Deno.test("explain: no IP-database warning when a pin, not geolocation, chose the region", async (t) => {
  const config = parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.test" }, us: { origin: "http://us.test" } },
      default_region: "us",
      geo: { countries: { AU: "au" }, ip_lookup: true },
      rules: [{ name: "app", type: "regional" }],
    }),
    { env: () => undefined },
  );
  await t.step("pinned by cookie: the IP decides nothing", async () => {
    const e = await explainRequest({
      method: "GET",
      url: "https://app.example.com/",
      headers: { cookie: "__Host-vestibule-region=au" },
    }, config);
    assert.deepEqual([e.region, e.reason], ["au", "pin cookie"]);
    assert.ok(!e.notes.includes(NO_IP_DATABASE), e.notes.join("\n"));
  });
  await t.step("unpinned: the warning is still given", async () => {
    const e = await explainRequest({ method: "GET", url: "https://app.example.com/" }, config);
    assert.deepEqual([e.region, e.reason], ["us", "default"]);
    assert.ok(e.notes.includes(NO_IP_DATABASE), e.notes.join("\n"));
  });
});

const overrideConfig = parseRules(
  JSON.stringify({
    regions: { us: { origin: "http://us.test" } },
    default_region: "us",
    rules: [
      { name: "deletes", type: "regional", match: { methods: ["DELETE"] } },
      { name: "app", type: "regional" },
    ],
  }),
  { env: () => undefined },
);

Deno.test("a method override header is honoured only on POST: a PUT carrying one is routed as PUT", async () => {
  const put = await explainRequest({
    method: "PUT",
    url: "https://app.test/x",
    headers: { "x-http-method-override": "DELETE" },
    body: "a",
  }, overrideConfig);
  assert.equal(put.refused, undefined);
  assert.equal(put.rule, "app");
  // The same claim on a POST is refused: the two readings are routed by different rules.
  const post = await explainRequest({
    method: "POST",
    url: "https://app.test/x",
    headers: { "x-http-method-override": "DELETE" },
    body: "a",
  }, overrideConfig);
  assert.equal(post.refused?.code, "ambiguous_method");
});

Deno.test("a POST whose override method is routed by another rule of the same type is refused", async () => {
  // `deletes` and `app` are both regional: the override still picks another rule.
  const post = await explainRequest({
    method: "POST",
    url: "https://app.test/x?_method=DELETE",
  }, overrideConfig);
  assert.equal(post.rule, "app");
  assert.equal(post.refused?.code, "ambiguous_method");
  assert.match(post.refused!.message, /routed by rule "deletes", not "app"/);
});

Deno.test("explain says pin_on pins nothing when the region came from the pin cookie, not region_from", async () => {
  // routes/regional.ts pins only when reason is region_from; "xx" names no region.
  const e = await explainRequest({
    method: "POST",
    url: "https://app.example.com/staff/switch-region/xx",
    headers: [["cookie", "__Host-vestibule-region=au"]],
  }, config);
  assert.equal(e.rule, "staff-switch-region");
  assert.equal(e.reason, "pin cookie");
  assert.ok(!e.notes.some((n) => n.startsWith("Pins the browser")), e.notes.join("\n"));
  assert.ok(
    e.notes.includes("The request names no region: pin_on does not apply, nothing is pinned"),
  );
});

Deno.test("explain's all-fail note for a broadcast with prefer_failure says those answers come next", async () => {
  const e = await explainRequest({
    method: "POST",
    url: "https://app.example.com/accounts/login/",
    headers: [["content-type", "application/x-www-form-urlencoded"]],
    body: "username=a&password=b",
  }, config);
  assert.equal(e.rule, "login");
  assert.ok(
    e.notes.some((n) =>
      n.startsWith(
        "If none succeeds, the client gets the best failure (non-5xx first, then answers matching prefer_failure)",
      )
    ),
    e.notes.join("\n"),
  );
});

Deno.test("shownUrl() masks a token given as the URL's user name alone", async () => {
  const { shownUrl } = await import("./explain.ts");
  const shown = shownUrl("https://ghp_s3cretTok3n@app.example.com/x");
  assert.doesNotMatch(shown, /s3cretTok3n/);
  assert.equal(shown, "https://***@app.example.com/x");
});

Deno.test("shownUrl() masks a curl-style user:password@host whose password holds an @", async () => {
  const { shownUrl } = await import("./explain.ts");
  const shown = shownUrl("ops:p@ssw0rd@app.example.com/x");
  assert.doesNotMatch(shown, /ssw0rd/);
  assert.equal(shown, "***@app.example.com/x");
});

Deno.test("explain says a pin header naming no region is ignored also when a pin cookie decides", async () => {
  const e = await explainRequest({
    method: "GET",
    url: "https://app.example.com/dashboard",
    headers: [["x-vestibule-region", "zz"], ["cookie", "__Host-vestibule-region=au"]],
  }, config);
  assert.equal(e.region, "au");
  assert.equal(e.reason, "pin cookie");
  assert.ok(
    e.notes.includes('The pin header "x-vestibule-region" does not name a region: ignored'),
    e.notes.join("\n"),
  );
});

Deno.test("explain's text shows a cookie and a header name sent in UTF-8 as typed, not as octets", async () => {
  const { formatExplanation } = await import("./explain_text.ts");
  const { headersAsSent } = await import("./explain.ts");
  const e = await explainRequest({
    method: "GET",
    url: "https://app.example.com/dashboard",
    headers: headersAsSent({ cookie: "café=1; csrftoken=x" }),
  }, config);
  const text = formatExplanation(e);
  assert.match(text, /Cookies stripped: café \(/, text);
  // Pinned here, every cookie but the pin is forwarded: the forwarded list shows it as typed too.
  const pinned = formatExplanation(
    await explainRequest({
      method: "GET",
      url: "https://app.example.com/dashboard",
      headers: headersAsSent({ cookie: "__Host-vestibule-region=us; café=1" }),
    }, config),
  );
  assert.match(pinned, /Cookies forwarded: café$/m, pinned);
  assert.doesNotMatch(pinned, /Ã/, pinned);
  assert.doesNotMatch(text, /Ã/, text);
});

Deno.test("explain notes that a redirect contacts no upstream", async () => {
  const e = await explainRequest({ method: "GET", url: "https://app.example.com/help/x" }, config);
  assert.equal(e.status, 301);
  assert.deepEqual(e.targets, []);
  assert.ok(e.notes.includes("Answered by vestibule with a redirect: no upstream is contacted"));
});

Deno.test("explain refuses a HEAD with a body as the router does (400 body_not_allowed), not with an error", async () => {
  const e = await explainRequest(
    { method: "HEAD", url: "https://app.example.com/x", body: "a=1" },
    config,
  );
  assert.equal(e.refused?.code, "body_not_allowed");
  assert.equal(e.refused?.status, 400);
});
