/**
 * End-to-end with Deno's built-in OpenTelemetry on: a subprocess vestibule exports its spans over
 * OTLP/HTTP JSON to a stand-in receiver here, in front of a real loopback upstream.
 */
import assert from "node:assert/strict";
import { startUpstream } from "./_servers.ts";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
}

/** OTLP SpanKind: https://opentelemetry.io/docs/specs/otlp/ */
const SERVER = 2;
const CLIENT = 3;

function startReceiver() {
  const spans: OtlpSpan[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = await req.text();
    if (new URL(req.url).pathname === "/v1/traces") {
      const data = JSON.parse(body) as {
        resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const rs of data.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
    }
    return Response.json({});
  });
  return { spans, url: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

function attribute(span: OtlpSpan, key: string): unknown {
  const value = span.attributes?.find((a) => a.key === key)?.value;
  return value && Object.values(value)[0];
}

Deno.test("tracing: with OTEL_DENO the client's trace continues upstream with one traceparent and vestibule's attributes", async () => {
  const receiver = startReceiver();
  const upstream = startUpstream();
  const edge = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "tests/_otel_edge.ts"],
    cwd: new URL("..", import.meta.url),
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "vestibule-test",
      OTEL_DENO_CONSOLE: "ignore",
      UPSTREAM: upstream.url,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const reader = edge.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!/PORT (\d+)/.test(seen)) {
      const { done, value } = await reader.read();
      assert.ok(!done, `the edge did not start: ${seen}`);
      seen += value;
    }
    const port = /PORT (\d+)/.exec(seen)![1];
    const clientTrace = "0af7651916cd43dd8448eb211c80319c";
    const clientSpan = "b7ad6b7169203331";
    const res = await fetch(`http://127.0.0.1:${port}/dashboard`, {
      headers: { traceparent: `00-${clientTrace}-${clientSpan}-01`, "x-request-id": "trace-me" },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();

    const sent = upstream.received[0].headers.get("traceparent");
    assert.match(sent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, `one traceparent: ${sent}`);
    const [, traceId, parentId] = sent!.split("-");
    assert.equal(traceId, clientTrace, "the client's trace continues");
    assert.notEqual(parentId, clientSpan, "the upstream's parent is vestibule's span");

    edge.kill("SIGTERM");
    assert.equal((await edge.status).code, 0);
    await reader.cancel();

    const server = receiver.spans.find((s) => s.kind === SERVER && s.traceId === clientTrace);
    assert.ok(server, `no server span in ${JSON.stringify(receiver.spans)}`);
    assert.equal(server.parentSpanId, clientSpan);
    assert.equal(attribute(server, "vestibule.rule"), "app");
    assert.equal(attribute(server, "vestibule.type"), "regional");
    assert.equal(attribute(server, "vestibule.region"), "us");
    assert.equal(attribute(server, "vestibule.region_reason"), "default");
    assert.equal(attribute(server, "vestibule.request_id"), "trace-me");
    const client = receiver.spans.find((s) => s.kind === CLIENT && s.traceId === clientTrace);
    assert.ok(client, "no fetch span");
    assert.equal(client.parentSpanId, server.spanId);
    assert.equal(client.spanId, parentId, "the upstream saw the fetch span as its parent");
  } finally {
    if ((await Promise.race([edge.status, null])) === null) edge.kill("SIGKILL");
    await edge.status;
    await Promise.all([receiver.close(), upstream.close()]);
  }
});
