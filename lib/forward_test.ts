import assert from "node:assert/strict";
import type { Upstream } from "./compile_rules.ts";
import { clientResponse, type ForwardContext } from "./forward.ts";

/** An origin as compileRules() makes it. */
function upstream(origin: string): Upstream {
  const url = new URL(origin);
  return {
    id: "us",
    kind: "region",
    origin: url.origin,
    host: url.host,
    headers: [],
    timeoutMs: 1,
  };
}

function context(proto: string, publicHost: string): ForwardContext {
  return {
    publicHost,
    proto,
    forwardedFor: "203.0.113.9",
    clientIp: "203.0.113.9",
    trustForwarded: false,
    pinHeader: "x-vestibule-region",
    pinCookie: "__Host-vestibule-region",
  };
}

/** The Location the client gets when `origin` answers with `location`. */
function relayed(location: string, origin: string, proto = "http", host = "app.example.com") {
  const answer = new Response(null, { status: 302, headers: { location } });
  const response = clientResponse(answer, upstream(origin), context(proto, host), {
    acceptEncoding: "identity",
    clientAcceptEncoding: null,
  });
  return response.headers.get("location");
}

Deno.test("clientResponse() origin address leak: the origin's host is found however it is spelt", () => {
  const origin = "http://origin.internal:8001";
  assert.equal(
    relayed("http://origin.internal.:8001/n?a=1#f", origin),
    "http://app.example.com/n?a=1#f",
  );
  assert.equal(relayed("http://ORIGIN.internal:8001/n", origin), "http://app.example.com/n");
  // An app behind TLS writes https:// to its own Host, on the default port either way.
  assert.equal(
    relayed("https://origin.internal/n", "http://origin.internal"),
    "http://app.example.com/n",
  );
  assert.equal(
    relayed("http://origin.internal/n", "https://origin.internal"),
    "http://app.example.com/n",
  );
});

Deno.test("clientResponse() keeps a relative Location relative when the public host does not parse", () => {
  assert.equal(relayed("/n?q", "http://origin.internal", "http", "999.999.999.999"), "/n?q");
});

Deno.test("clientResponse() leaves a Location that is not the origin's, or is the public page's own", () => {
  const origin = "http://origin.internal:8001";
  for (
    const location of ["/n", "n?x", "https://other.example/n", "http://origin.internal:8002/n"]
  ) {
    assert.equal(relayed(location, origin), location);
  }
  // Reached under the public name itself: a path stays a path, the same origin stays as it is.
  assert.equal(relayed("/n", "http://app.example.com"), "/n");
  assert.equal(
    relayed("http://app.example.com/n", "http://app.example.com"),
    "http://app.example.com/n",
  );
});

Deno.test("clientResponse() https downgrade: behind TLS an http Location to the origin, public name and all, becomes https", () => {
  assert.equal(
    relayed("http://app.example.com/n", "http://app.example.com", "https"),
    "https://app.example.com/n",
  );
});

Deno.test("clientResponse() origin address leak: a cookie Domain naming the origin in capitals is rewritten too", () => {
  // Domain matching is case-insensitive (RFC 6265 §5.1.3): left as it is, the browser drops the
  // session cookie (it names another host than the page's) and the origin's name leaks.
  const answer = new Response("ok", {
    headers: { "set-cookie": "sid=1; Domain=AU.Internal.Example; Path=/" },
  });
  const response = clientResponse(
    answer,
    upstream("http://au.internal.example:8001"),
    context("https", "app.example.com"),
    { acceptEncoding: "identity", clientAcceptEncoding: null },
  );
  assert.deepEqual(response.headers.getSetCookie(), ["sid=1; Domain=app.example.com; Path=/"]);
});
