/**
 * The request's host after "the URL's authority wins over Host": what the access log, explain and
 * the router say for absolute-form targets, HTTP/2 requests and Hosts with or without a port.
 */
import assert from "node:assert/strict";
import { h2Request } from "./_http2.ts";
import { rawRequest, startUpstream, startVestibule } from "./_servers.ts";
import { parseRules } from "../lib/load_rules.ts";
import { explainRequest } from "../lib/explain.ts";

const adminRules = (us: string, admin: string) => ({
  regions: { us: { origin: us } },
  upstreams: { admin: { origin: admin } },
  default_region: "us",
  rules: [
    { name: "admin", type: "global", match: { host: "^admin\\.example$" }, upstream: "admin" },
    { name: "app", type: "regional" },
  ],
});

Deno.test("access log: the host logged is the host the request was routed by", async (t) => {
  const admin = startUpstream();
  const us = startUpstream();
  const logs: string[] = [];
  const edge = startVestibule(adminRules(us.url, admin.url), {
    deps: { log: (line) => logs.push(line) },
  });
  try {
    await t.step("absolute-form target beside a Host naming another host", async () => {
      await rawRequest(
        edge.port,
        "GET http://admin.example/x HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
      );
      const line = JSON.parse(logs.at(-1)!);
      assert.equal(admin.received.at(-1)?.headers.get("x-forwarded-host"), "admin.example");
      assert.deepEqual({ rule: line.rule, host: line.host }, {
        rule: "admin",
        host: "admin.example",
      });
    });
    await t.step("HTTP/2 :authority beside a host header naming another host", async () => {
      await h2Request(edge.port, {
        ":path": "/x",
        ":authority": "admin.example",
        host: "www.example",
      });
      const line = JSON.parse(logs.at(-1)!);
      assert.deepEqual({ rule: line.rule, host: line.host }, {
        rule: "admin",
        host: "admin.example",
      });
    });
  } finally {
    await Promise.all([edge.close(), admin.close(), us.close()]);
  }
});

Deno.test("access log: an absolute-form target without Host never logs its userinfo or query", async (t) => {
  const us = startUpstream();
  const logs: string[] = [];
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  }, { deps: { log: (line) => logs.push(line) } });
  try {
    for (
      const head of [
        "GET http://alice:s3cr3t@app.example/x HTTP/1.0\r\n\r\n",
        "GET http://alice:s3cr3t@app.example/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET http://app.example?token=s3cr3t HTTP/1.0\r\n\r\n",
      ]
    ) {
      await t.step(head.split("\r\n")[0], async () => {
        const answer = await rawRequest(edge.port, head);
        const line = JSON.parse(logs.at(-1)!);
        assert.match(answer, /^HTTP\/1\.[01] 200/); // forwarded, to app.example
        assert.equal(line.host, "app.example", logs.at(-1));
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("a non-http absolute-form target with a Host naming a port is 400 bad_path, not 500", async () => {
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  try {
    const answer = await rawRequest(
      edge.port,
      "GET file://a/x HTTP/1.1\r\nHost: a:8080\r\nConnection: close\r\n\r\n",
    );
    assert.match(answer.split("\r\n")[0], /^HTTP\/1\.1 400/, answer);
    assert.match(answer, /bad_path/, answer);
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("explain with a URL that has a port and a Host without one agrees with the router", async () => {
  const app = startUpstream();
  const us = startUpstream();
  const rules = {
    regions: { us: { origin: us.url } },
    upstreams: { app: { origin: app.url } },
    default_region: "us",
    rules: [
      {
        name: "by-host",
        type: "global",
        match: { headers: { host: "^app\\.example$" } },
        upstream: "app",
      },
      { name: "rest", type: "regional" },
    ],
  };
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  const logs: string[] = [];
  const edge = startVestibule(rules, { deps: { log: (line) => logs.push(line) } });
  try {
    // `curl -H 'Host: app.example' http://127.0.0.1:PORT/x`, as it reaches the router.
    await rawRequest(
      edge.port,
      "GET /x HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
    );
    const router = {
      rule: JSON.parse(logs.at(-1)!).rule,
      xfh: (app.received[0] ?? us.received[0]).headers.get("x-forwarded-host"),
    };
    // `deno task explain -- GET http://127.0.0.1:PORT/x -H 'Host: app.example'`
    const explained = await explainRequest({
      method: "GET",
      url: `${edge.url}/x`,
      headers: [["Host", "app.example"]],
    }, config);
    assert.deepEqual(router, { rule: "by-host", xfh: "app.example" });
    assert.deepEqual(
      { rule: explained.rule, xfh: explained.targets[0]?.forward.headers.set["x-forwarded-host"] },
      router,
    );
  } finally {
    await Promise.all([edge.close(), app.close(), us.close()]);
  }
});
