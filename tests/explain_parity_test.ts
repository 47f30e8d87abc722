/**
 * `explain` and `check-rules` against the running router (createApp on Deno.serve, real loopback
 * upstreams): the same request must name the same rule, and check-rules must say why without
 * printing a secret from a broken test file.
 */
import assert from "node:assert/strict";
import { rawRequest, routerAndRules, startUpstream, startVestibule } from "./_servers.ts";
import { runTask } from "./_cli.ts";
import { parseRules } from "../lib/load_rules.ts";
import { explainRequest } from "../lib/explain.ts";
import { runRouteCases } from "../lib/route_cases.ts";

/** Writes `head` (Latin-1 text, one byte per char) then `body` on a raw socket; reads to EOF. */
async function sendBytes(port: number, head: string, body?: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(Uint8Array.from(head, (c) => c.charCodeAt(0)));
  if (body) await conn.write(body);
  return new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
}

/** The router's decision for one raw request, from its access line. */
async function routed(
  rules: Record<string, unknown>,
  head: string,
  body?: Uint8Array,
): Promise<{ rule?: string; status: number }> {
  const logs: string[] = [];
  const edge = startVestibule(rules, { deps: { log: (line) => logs.push(line) } });
  try {
    await sendBytes(edge.port, head, body);
    const line = JSON.parse(logs.at(-1)!);
    return { rule: line.rule, status: line.status };
  } finally {
    await edge.close();
  }
}

Deno.test("explain and check-rules read a body in the charset its Content-Type declares, as the router does", async (t) => {
  const us = startUpstream();
  const rules = {
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [
      {
        name: "spanish-note",
        type: "regional",
        match: { methods: ["POST"], path: "^/notes$", body: { regex: "José" } },
      },
      {
        name: "jose-form",
        type: "regional",
        match: { methods: ["POST"], path: "^/form$", body: { form: { name: "José" } } },
      },
      { name: "app", type: "regional" },
    ],
  };
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  try {
    for (
      const [contentType, bytes, rule] of [
        // "José" in ISO-8859-1: é is the one byte 0xE9.
        ["text/plain; charset=iso-8859-1", Uint8Array.of(0x4a, 0x6f, 0x73, 0xe9), "spanish-note"],
        // A charset the router cannot read as the app does: explain writes UTF-8, and neither
        // matches the regex.
        ["text/plain; charset=utf-7", new TextEncoder().encode("José"), "app"],
      ] as const
    ) {
      await t.step(`${contentType} body 'José' (regex matcher)`, async () => {
        const router = await routed(
          rules,
          `POST /notes HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: ${contentType}\r\n` +
            `Content-Length: ${bytes.length}\r\nConnection: close\r\n\r\n`,
          bytes,
        );
        // What an operator types: `explain -- POST .../notes -H 'Content-Type: …' --body 'José'`.
        const explained = await explainRequest({
          method: "POST",
          url: "https://app.example.com/notes",
          headers: [["Content-Type", contentType]],
          body: "José",
        }, config);
        const [checked] = await runRouteCases([{
          request: {
            method: "POST",
            url: "https://app.example.com/notes",
            headers: { "Content-Type": contentType },
            body: "José",
          },
          expect: { rule: router.rule!, type: "regional" },
        }], config);
        assert.equal(router.rule, rule);
        assert.deepEqual(
          { explain: explained.rule, checkRules: checked.mismatches },
          { explain: router.rule, checkRules: [] },
        );
      });
    }

    await t.step("urlencoded; charset=iso-8859-1 body 'name=José' (form matcher)", async () => {
      const contentType = "application/x-www-form-urlencoded; charset=iso-8859-1";
      const bytes = Uint8Array.of(...new TextEncoder().encode("name=Jos"), 0xe9);
      const router = await routed(
        rules,
        `POST /form HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: ${contentType}\r\n` +
          `Content-Length: ${bytes.length}\r\nConnection: close\r\n\r\n`,
        bytes,
      );
      const explained = await explainRequest({
        method: "POST",
        url: "https://app.example.com/form",
        headers: [["Content-Type", contentType]],
        body: "name=José",
      }, config);
      assert.equal(explained.rule, router.rule);
    });
  } finally {
    await us.close();
  }
});

/** A global `admin` rule for requests whose Host matches `host`, before the regional app. */
function hostRules(usOrigin: string, adminOrigin: string, host: string) {
  return {
    regions: { us: { origin: usOrigin } },
    upstreams: { admin: { origin: adminOrigin } },
    default_region: "us",
    rules: [
      { name: "admin", type: "global", match: { headers: { host } }, upstream: "admin" },
      { name: "app", type: "regional" },
    ],
  };
}

Deno.test("explain and check-rules give an absolute URL's host as the Host header the router always sees", async () => {
  const admin = startUpstream();
  const us = startUpstream();
  const rules = hostRules(us.url, admin.url, "^admin\\.example\\.com$");
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  try {
    // `curl https://admin.example.com/users`, as it reaches the router.
    const router = await routed(
      rules,
      "GET /users HTTP/1.1\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n",
    );
    assert.equal(router.rule, "admin");
    // `deno task explain -- GET https://admin.example.com/users`, and the same route-table case.
    const explained = await explainRequest({
      method: "GET",
      url: "https://admin.example.com/users",
    }, config);
    const [checked] = await runRouteCases([{
      request: { method: "GET", url: "https://admin.example.com/users" },
      expect: { rule: "admin", type: "global", upstream: "admin" },
    }], config);
    assert.deepEqual(
      { explain: explained.rule, checkRules: checked.mismatches },
      { explain: "admin", checkRules: [] },
    );
  } finally {
    await Promise.all([admin.close(), us.close()]);
  }
});

/** Writes a rules file and a test file beside it in a new temporary directory. */
async function ruleFiles(rules: unknown, cases: unknown): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "vestibule_review_" });
  const path = `${dir}/rules.json`;
  await Deno.writeTextFile(path, JSON.stringify(rules));
  await Deno.writeTextFile(`${dir}/rules.test.json`, JSON.stringify(cases));
  return { dir, path };
}

const ONE_REGION = {
  regions: { us: { origin: "http://us.invalid" } },
  default_region: "us",
  ocap: {
    path: "/_ocap",
    key: "0123456789abcdef0123",
    targets: { google: { origin: "https://oauth2.googleapis.com" } },
  },
  rules: [{ name: "app", type: "regional" }],
};

Deno.test("check-rules never prints a cookie or token from a test file's headers", async (t) => {
  const cases: Array<[string, Record<string, string>]> = [
    // Cookies copied from devtools one per line, or a pasted header line used as a name: the
    // same mistakes bin/explain.ts refuses without quoting the value (`-H 'Authorization Basic a:b'`).
    ["a cookie header pasted across lines", {
      Cookie: "sessionid=s3cr3t-session-value;\ncsrftoken=abc",
    }],
    ["a header line pasted as a name", { "Authorization: Bearer s3cr3t-token-value": "" }],
  ];
  for (const [what, headers] of cases) {
    await t.step(what, async () => {
      const { dir, path } = await ruleFiles(ONE_REGION, {
        cases: [{
          name: "dashboard",
          request: { method: "GET", url: "/dashboard", headers },
          expect: { rule: "app", type: "regional" },
        }],
      });
      try {
        const { code, stdout, stderr } = await runTask("check-rules", [path]);
        assert.equal(code, 1);
        assert.doesNotMatch(stdout + stderr, /s3cr3t/, stdout + stderr);
        assert.match(stdout + stderr, /request\.headers\./, stdout + stderr);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("check-rules says why a case for vestibule's own path or OCAP's mount matched no rule", async (t) => {
  for (const url of ["/_vestibule/status", "/_ocap/google/token"]) {
    await t.step(url, async () => {
      const { dir, path } = await ruleFiles(ONE_REGION, {
        cases: [{
          name: "routed to the app",
          request: { method: "POST", url },
          expect: { rule: "app", type: "regional" },
        }],
      });
      try {
        const { code, stdout } = await runTask("check-rules", [path]);
        assert.equal(code, 1);
        // A refused request gets "the router answers it itself: …"; this one gets no reason at all.
        assert.match(
          stdout,
          /the router answers it itself: (vestibule's own endpoint|OCAP's mount)/,
          stdout,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("explain and check-rules agree with the router on a match.headers.host rule for an HTTP/2 request", async () => {
  const admin = startUpstream();
  const us = startUpstream();
  const rules = hostRules(us.url, admin.url, "^127\\.0\\.0\\.1(:\\d+)?$");
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  const edge = startVestibule(rules);
  // An HTTP/2 client (every browser over TLS): the host travels as :authority.
  const client = Deno.createHttpClient({ http1: false, http2: true });
  try {
    const url = `${edge.url}/users`;
    const res = await fetch(url, { client });
    await res.body?.cancel();
    const router = admin.received.length === 1 ? "admin" : us.received.length === 1 ? "app" : "?";
    // :authority is the Host of an HTTP/2 request, as nginx and Envoy read it.
    assert.equal(router, "admin");
    const explained = await explainRequest({ method: "GET", url }, config);
    const [checked] = await runRouteCases([{
      request: { method: "GET", url },
      expect: { rule: router, type: router === "admin" ? "global" : "regional" },
    }], config);
    assert.deepEqual(
      { explain: explained.rule, checkRules: checked.mismatches },
      { explain: router, checkRules: [] },
    );
  } finally {
    client.close();
    await Promise.all([edge.close(), admin.close(), us.close()]);
  }
});

Deno.test("check-rules never prints a token from a rules file's header names", async (t) => {
  const region = (headers: Record<string, string>) => ({ origin: "http://us.invalid", headers });
  const files: Array<[string, unknown]> = [
    ["a header line pasted as a name in a region's headers", {
      regions: { us: region({ "X-Origin-Secret: s3cr3t-origin-value": "" }) },
      default_region: "us",
      rules: [{ name: "app", type: "regional" }],
    }],
    ["a header line pasted as a name in match.headers", {
      regions: { us: { origin: "http://us.invalid" } },
      default_region: "us",
      rules: [{
        name: "api",
        type: "regional",
        match: { headers: { "Authorization: Bearer s3cr3t-token-value": ".*" } },
      }, { name: "app", type: "regional" }],
    }],
  ];
  for (const [what, rules] of files) {
    await t.step(what, async () => {
      const dir = await Deno.makeTempDir({ prefix: "vestibule_review_" });
      try {
        await Deno.writeTextFile(`${dir}/rules.json`, JSON.stringify(rules));
        const { code, stdout, stderr } = await runTask("check-rules", [`${dir}/rules.json`]);
        assert.equal(code, 1);
        assert.doesNotMatch(stdout + stderr, /s3cr3t/, stdout + stderr);
        assert.match(stdout + stderr, /headers\.\(a name that is not a header token\)/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("explain reports the router's refusal of a GET body whatever charset its Content-Type names", async (t) => {
  const us = startUpstream();
  const rules = {
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  };
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  const edge = startVestibule(rules);
  try {
    for (
      const [contentType, body] of [
        ["text/plain; charset=shift_jis", "q"],
        ["text/plain; charset=iso-8859-1", "東京"],
      ]
    ) {
      await t.step(`${contentType}, body ${body}`, async () => {
        // A client sends the bytes it has; any body on a GET is refused before the rules.
        const answer = await rawRequest(
          edge.port,
          `GET /search HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: ${contentType}\r\n` +
            `Content-Length: 2\r\nConnection: close\r\n\r\nqq`,
        );
        assert.match(answer, /^HTTP\/1\.1 400 [^]*body_not_allowed/);
        const explained = await explainRequest({
          method: "GET",
          url: "https://app.example.com/search",
          headers: [["Content-Type", contentType]],
          body,
        }, config).catch((error) => ({ threw: (error as Error).message }));
        assert.deepEqual(
          "refused" in explained ? explained.refused?.code : explained,
          "body_not_allowed",
        );
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("explain shows the accept-encoding a Range request really sends when the rules file sets one", async () => {
  const us = startUpstream();
  const rules = {
    regions: { us: { origin: us.url, headers: { "accept-encoding": "gzip" } } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  };
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  const edge = startVestibule(rules);
  try {
    const res = await fetch(`${edge.url}/app.js`, { headers: { range: "bytes=0-9" } });
    await res.body?.cancel();
    const sent = us.received[0].headers.get("accept-encoding");
    assert.equal(sent, "identity"); // the router, since 43ef052
    const explained = await explainRequest({
      method: "GET",
      url: `${edge.url}/app.js`,
      headers: [["Range", "bytes=0-9"]],
    }, config);
    const { set, fromRules } = explained.targets[0].forward.headers;
    // explain must say what goes out: vestibule's identity, not the rules file's header.
    assert.deepEqual(
      { set: set["accept-encoding"], fromRules: fromRules.includes("accept-encoding") },
      { set: sent, fromRules: false },
    );
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("check-rules never prints a token from a header name pasted twice", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vestibule_review_" });
  try {
    // The same `Authorization: Bearer …` line pasted twice as a header name.
    const name = JSON.stringify("Authorization: Bearer s3cr3t-token-value");
    await Deno.writeTextFile(
      `${dir}/rules.json`,
      `{"regions":{"us":{"origin":"http://us.invalid","headers":{${name}:"",${name}:""}}},` +
        `"default_region":"us","rules":[{"name":"app","type":"regional"}]}`,
    );
    const { code, stdout, stderr } = await runTask("check-rules", [`${dir}/rules.json`]);
    assert.equal(code, 1);
    assert.doesNotMatch(stdout + stderr, /s3cr3t/, stdout + stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-rules never quotes a rules file's text around a JSON syntax error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vestibule_review_" });
  try {
    // A cookie pasted without quotes: V8's own message quotes the text around it.
    await Deno.writeTextFile(
      `${dir}/rules.json`,
      `{"regions": {"us": {"origin": "http://us.invalid",\n "headers": {"cookie": sessionid=s3cr3t}}}}`,
    );
    const { code, stdout, stderr } = await runTask("check-rules", [`${dir}/rules.json`]);
    assert.equal(code, 1);
    assert.doesNotMatch(stdout + stderr, /s3cr3t/, stdout + stderr);
    assert.match(stdout + stderr, /Unexpected token 's' in JSON \(line 2 column 24\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("explain: a chunked region_from body over the limit is 413, as the router answers", async (t) => {
  const up = startUpstream();
  const file = {
    regions: { au: { origin: up.url }, us: { origin: up.url } },
    default_region: "us",
    body_limit_bytes: 16,
    rules: [{ name: "switch", type: "regional", region_from: { query: "region" } }],
  };
  const edge = startVestibule(file);
  const config = parseRules(JSON.stringify(file), { env: () => undefined });
  const body = "region=au&pad=" + "x".repeat(40);
  try {
    await t.step("the router answers 413 body_too_large", async () => {
      const chunk = body.length.toString(16);
      const answer = await rawRequest(
        edge.port,
        "POST /switch?region=au HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n" +
          "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n" +
          `${chunk}\r\n${body}\r\n0\r\n\r\n`,
      );
      assert.match(answer, /^HTTP\/1\.1 413 /);
    });
    await t.step("explain says so, not the default region", async () => {
      // No Content-Length of explain's own beside the client's Transfer-Encoding: a declared
      // length over the limit would name no region and stream on (us, default).
      const e = await explainRequest({
        method: "POST",
        url: "http://app.example/switch?region=au",
        headers: {
          "transfer-encoding": "chunked",
          "content-type": "application/x-www-form-urlencoded",
        },
        body,
      }, config);
      assert.equal(e.refused?.code, "body_too_large", JSON.stringify(e));
      assert.equal(e.region, undefined);
    });
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("explain: vestibule's own endpoint under a Host typed with spaces around it", async () => {
  const { us: up, edge, config } = routerAndRules();
  try {
    const answer = await rawRequest(
      edge.port,
      "GET /_vestibule/health HTTP/1.1\r\nHost:  app.example.com  \r\nConnection: close\r\n\r\n",
    );
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.equal(up.received.length, 0, "the router tried no rule");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
  // A route case's `"Host": " app.example.com "`: Deno.serve trims the value, and the router
  // serves its health endpoint; no rule is tried.
  const e = await explainRequest({
    method: "GET",
    url: "/_vestibule/health",
    headers: [["host", " app.example.com "]],
  }, config);
  assert.equal(e.servedBy, "vestibule", JSON.stringify(e));
  assert.equal(e.rule, undefined);
});
