/**
 * @module Path confusion between the rule matcher and the framework behind it: request targets
 * that a matcher could judge "not /admin" (or "not the login") while the upstream's server or
 * router reads them as exactly that path. vestibule merges slashes before matching and
 * forwarding, and refuses encoded slashes and `;` unless the rules file allows them.
 *
 * Each stand-in upstream models one framework's documented path handling:
 * - WSGI (Django runserver/gunicorn/uWSGI, Flask/Werkzeug): PATH_INFO is percent-decoded, `%2F`
 *   included (RFC 3875 §4.1.5; CPython wsgiref/simple_server.py `unquote(path, 'iso-8859-1')`,
 *   which Django's runserver handler inherits). Laravel's UriValidator does `rawurldecode($path)`.
 * - nginx in front of an app: `location` matches the URI after decoding `%XX`, resolving `.`/`..`
 *   and merging slashes (ngx_http_core_module, "location").
 * - Rails (Journey `Router::Utils.normalize_path`: `path.squeeze!("/")`), Tomcat (CoyoteAdapter
 *   `normalize`, COLLAPSE_ADJACENT_SLASHES on by default): `//admin` routes as `/admin`.
 * - Tomcat/Jetty/Spring on a servlet container: `;params` are removed from every segment before
 *   dot segments are resolved (Jakarta Servlet 6 §3.5.2), so `/x/..;/admin` is `/admin`.
 */
import assert from "node:assert/strict";
import { explainRequest } from "../lib/explain.ts";
import { parseRules } from "../lib/load_rules.ts";
import { rawRequest, startUpstream, startVestibule } from "./_servers.ts";

/** `/admin` is sent off the public site by a global redirect, as an operator would block it. */
const ADMIN_RULE = {
  name: "admin-off-site",
  type: "global",
  match: { path: "^/admin(/.*)?$" },
  redirect: { location: "https://intranet.example/", status: 302 },
};

type Model = (rawPath: string) => string;

/** PEP 3333 / CGI: PATH_INFO is the decoded path (every escape, `%2F` too). */
const wsgi: Model = (p) => decodeURIComponent(p);

/** nginx location matching: decode, resolve dot segments, merge slashes. */
const nginx: Model = (p) => {
  const out: string[] = [];
  for (const seg of decodeURIComponent(p).replace(/\/+/g, "/").split("/").slice(1)) {
    if (seg === "..") out.pop();
    else if (seg !== ".") out.push(seg);
  }
  return "/" + out.join("/");
};

/** Rails Journey normalize_path: squeeze "/" (and drop a trailing one). */
const rails: Model = (p) => p.replace(/\/+/g, "/").replace(/(.)\/$/, "$1");

/** Servlet containers: strip `;params` per segment, then merge slashes and resolve dot segments. */
const servlet: Model = (p) => {
  const out: string[] = [];
  for (const raw of p.replace(/\/+/g, "/").split("/").slice(1)) {
    const seg = raw.split(";", 1)[0];
    if (seg === "..") out.pop();
    else if (seg !== ".") out.push(seg);
  }
  return "/" + out.join("/");
};

/** An app that serves its admin at whatever path its framework reads as `/admin…`. */
function startAppReading(model: Model) {
  return startUpstream((_req, received) => {
    const routed = model(received.path);
    return /^\/admin(\/|$)/.test(routed)
      ? new Response(`ADMIN PAGE (${routed})`)
      : new Response(`app page (${routed})`);
  });
}

async function get(port: number, target: string): Promise<{ status: number; body: string }> {
  const answer = await rawRequest(
    port,
    `GET ${target} HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n`,
  );
  const [head, ...rest] = answer.split("\r\n\r\n");
  return { status: Number(head.split(" ")[1]), body: rest.join("\r\n\r\n") };
}

async function assertAdminRuleHolds(model: Model, targets: string[], t: Deno.TestContext) {
  const app = startAppReading(model);
  const edge = startVestibule({
    regions: { us: { origin: app.url } },
    default_region: "us",
    rules: [ADMIN_RULE, { name: "app", type: "regional" }],
  });
  try {
    for (const target of targets) {
      await t.step(target, async () => {
        const before = app.received.length;
        const { status, body } = await get(edge.port, target);
        assert.doesNotMatch(body, /ADMIN PAGE/, `the app served its admin for ${target}`);
        // The admin rule's redirect, or a refusal of the ambiguous path: either keeps it off the app.
        assert.ok(status === 302 || status === 400, `${target} got ${status}, not the admin rule`);
        assert.equal(app.received.length, before, `${target} reached the app`);
      });
    }
  } finally {
    await Promise.all([edge.close(), app.close()]);
  }
}

Deno.test("admin bypass: %2F for / (WSGI decodes PATH_INFO: Django, Flask; Laravel rawurldecodes)", async (t) => {
  await assertAdminRuleHolds(wsgi, ["/admin%2F", "/admin%2Flogin%2F", "/admin%2fusers%2f"], t);
});

Deno.test("admin bypass: ..%2F traversal (nginx location matching decodes, then resolves ..)", async (t) => {
  await assertAdminRuleHolds(nginx, ["/x/..%2Fadmin", "/static/..%2Fadmin/login/"], t);
});

Deno.test("admin bypass: empty segments //admin (Rails squeezes slashes, Tomcat collapses them, nginx merge_slashes)", async (t) => {
  await assertAdminRuleHolds(rails, ["//admin", "//admin/users"], t);
});

Deno.test("admin bypass: ;path parameters /admin;x=1 and /x/..;/admin (Tomcat, Jetty, Spring)", async (t) => {
  await assertAdminRuleHolds(
    servlet,
    ["/admin;x=1", "/admin;jsessionid=1/users", "/x/..;/admin"],
    t,
  );
});

Deno.test("admin bypass: an absolute-form target of another scheme (foo://host/x/..\\admin) is 400 bad_path", async (t) => {
  // Deno.serve keeps it; the URL parser reads its `\` as a plain character, the app's `fetch`
  // on the http origin as `/`: `/x/..\admin` matched nothing and reached the app as `/admin`.
  await assertAdminRuleHolds(
    servlet,
    [
      "foo://app.example.com/x/..\\admin",
      "foo://app.example.com/\\admin",
      "foo://app.example.com/admin",
    ],
    t,
  );
});

Deno.test("broadcast bypass: POST //accounts/login/ is the login, broadcast to every region", async () => {
  const au = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [
      {
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/accounts/login/$" },
        success: { status: [302] },
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    const answer = await rawRequest(
      edge.port,
      "POST //accounts/login/ HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\nConnection: close\r\n\r\nu=x",
    );
    assert.match(answer, /^HTTP\/1\.1 /);
    // Rails reads //accounts/login/ as /accounts/login: a login both regions must see, and both
    // get the path the rule matched.
    for (const region of [au, us]) {
      assert.deepEqual(region.received.map((r) => r.path), ["/accounts/login/"]);
    }
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("paths the rules file allows reach the app as the client sent them", async (t) => {
  const app = startUpstream();
  const lines: string[] = [];
  const file = {
    regions: { us: { origin: app.url } },
    default_region: "us",
    paths: { allow_encoded_slashes: true, allow_semicolons: true },
    rules: [
      { name: "website", type: "regional", match: { path: "^/about(/.*)?$" } },
      { name: "app", type: "regional" },
    ],
  };
  const edge = startVestibule(file, { deps: { log: (line) => lines.push(line) } });
  try {
    // An app that keeps %2F apart from / (Rails, Go) routes /about%2fx as one segment.
    for (const [target, rule] of [["/about%2fx", "app"], ["/x;v=1", "app"], ["/about;x", "app"]]) {
      await t.step(target, async () => {
        const { status } = await get(edge.port, target);
        assert.equal(status, 200);
        assert.equal(app.received.at(-1)!.path, target);
        assert.equal(JSON.parse(lines.at(-1)!).rule, rule);
      });
    }
  } finally {
    await Promise.all([edge.close(), app.close()]);
  }
});

Deno.test("bad_path: refused before any rule, logged, and explain says the same", async (t) => {
  const app = startUpstream();
  const lines: string[] = [];
  const file = {
    regions: { us: { origin: app.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  };
  const config = parseRules(JSON.stringify(file), { env: () => undefined });
  const edge = startVestibule(file, { deps: { log: (line) => lines.push(line) } });
  try {
    for (const target of ["/a%2Fb", "/a%5cb", "/a;b", "foo://app.example.com/a"]) {
      await t.step(target, async () => {
        const { status, body } = await get(edge.port, target);
        assert.equal(status, 400);
        assert.match(body, /^400 bad_path: /);
        assert.equal(JSON.parse(lines.at(-1)!).error, "bad_path");
        const explained = await explainRequest({ method: "GET", url: target }, config);
        assert.equal(explained.refused?.code, "bad_path");
      });
    }
    assert.equal(app.received.length, 0);
  } finally {
    await Promise.all([edge.close(), app.close()]);
  }
});

Deno.test("rule bypass: a path rule matches the path whatever the letter case of its %XX escapes", async () => {
  // The origin decodes /caf%c3%a9 and /caf%C3%A9 alike; the rule is written upper case (the
  // compiler refuses lower-case escapes), so the router must read the request so too.
  const cafe = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    upstreams: { cafe: { origin: cafe.url } },
    default_region: "us",
    rules: [
      { name: "cafe", type: "global", upstream: "cafe", match: { path: "^/caf%C3%A9$" } },
      { name: "app", type: "regional" },
    ],
  });
  try {
    for (const path of ["/caf%C3%A9", "/caf%c3%a9", "/caf%C3%a9"]) {
      const res = await fetch(`${edge.url}${path}`);
      await res.body?.cancel();
      assert.equal(cafe.received.length, 1, `${path} goes to the cafe rule`);
      cafe.received.length = 0;
    }
    assert.equal(us.received.length, 0);
  } finally {
    await Promise.all([edge.close(), cafe.close(), us.close()]);
  }
});
