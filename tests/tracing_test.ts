/**
 * End-to-end with Deno's built-in OpenTelemetry on: a subprocess vestibule exports its spans over
 * OTLP/HTTP JSON to a stand-in receiver here, in front of a real loopback upstream.
 */
import assert from "node:assert/strict";
import { tokenRequest } from "./_ocap.ts";
import { settles, startUpstream } from "./_servers.ts";

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

/** vestibule with `OTEL_DENO=true` in a subprocess, in front of `upstream`, exporting to `otlp`. */
async function startTracedEdge(upstream: string, otlp: string) {
  const edge = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "tests/_otel_edge.ts"],
    cwd: new URL("..", import.meta.url),
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "vestibule-test",
      OTEL_DENO_CONSOLE: "ignore",
      UPSTREAM: upstream,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = edge.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/PORT (\d+)/.test(seen)) {
    const { done, value } = await reader.read();
    if (done) {
      await edge.status;
      throw new Error(`the edge did not start: ${seen}`);
    }
    seen += value;
  }
  return {
    url: `http://127.0.0.1:${/PORT (\d+)/.exec(seen)![1]}`,
    /** Stops the edge (SIGTERM, so spans are flushed) and returns its exit code. */
    async stop(): Promise<number> {
      if ((await Promise.race([edge.status, null])) === null) edge.kill("SIGTERM");
      const { code } = await edge.status;
      await reader.cancel();
      return code;
    },
  };
}

const CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN = "b7ad6b7169203331";
const TRACEPARENT = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;

Deno.test("tracing: with OTEL_DENO the client's trace continues upstream with one traceparent and vestibule's attributes", async () => {
  const receiver = startReceiver();
  const upstream = startUpstream();
  const edge = await startTracedEdge(upstream.url, receiver.url);
  try {
    const res = await fetch(`${edge.url}/dashboard`, {
      headers: { traceparent: TRACEPARENT, "x-request-id": "trace-me" },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();

    const sent = upstream.received[0].headers.get("traceparent");
    assert.match(sent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, `one traceparent: ${sent}`);
    const [, traceId, parentId] = sent!.split("-");
    assert.equal(traceId, CLIENT_TRACE, "the client's trace continues");
    assert.notEqual(parentId, CLIENT_SPAN, "the upstream's parent is vestibule's span");

    assert.equal(await edge.stop(), 0);

    const server = receiver.spans.find((s) => s.kind === SERVER && s.traceId === CLIENT_TRACE);
    assert.ok(server, `no server span in ${JSON.stringify(receiver.spans)}`);
    assert.equal(server.parentSpanId, CLIENT_SPAN);
    assert.equal(attribute(server, "vestibule.rule"), "app");
    assert.equal(attribute(server, "vestibule.type"), "regional");
    assert.equal(attribute(server, "vestibule.region"), "us");
    assert.equal(attribute(server, "vestibule.region_reason"), "default");
    assert.equal(attribute(server, "vestibule.request_id"), "trace-me");
    const client = receiver.spans.find((s) => s.kind === CLIENT && s.traceId === CLIENT_TRACE);
    assert.ok(client, "no fetch span");
    assert.equal(client.parentSpanId, server.spanId);
    assert.equal(client.spanId, parentId, "the upstream saw the fetch span as its parent");
  } finally {
    await edge.stop();
    await Promise.all([receiver.close(), upstream.close()]);
  }
});

Deno.test("tracing: with OTEL_DENO a relayed WebSocket handshake carries the client's trace", async () => {
  const receiver = startReceiver();
  const sockets: WebSocket[] = [];
  // An upgraded request's headers cannot be read once it is closed: keep the one checked.
  const handshakes: Array<string | null> = [];
  const upstream = startUpstream((req) => {
    handshakes.push(req.headers.get("traceparent"));
    if (req.headers.get("upgrade") !== "websocket") return new Response("no", { status: 400 });
    const { socket, response } = Deno.upgradeWebSocket(req);
    sockets.push(socket);
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
  const edge = await startTracedEdge(upstream.url, receiver.url);
  try {
    const ws = new WebSocket(`${edge.url.replace("http", "ws")}/socket`, {
      headers: { traceparent: TRACEPARENT },
    } as unknown as string[]);
    const closed = new Promise((resolve) => ws.addEventListener("close", resolve));
    const echoed = await settles(
      new Promise((resolve, reject) => {
        ws.onopen = () => ws.send("ping");
        ws.onmessage = (event) => resolve(event.data);
        ws.onerror = reject;
      }),
      10_000,
      "no echo reached the client",
    );
    ws.close();
    await settles(closed, 10_000, "the client's WebSocket was not closed");
    assert.equal(echoed, "ping");
    assert.equal(handshakes.length, 1);
    const sent = handshakes[0];
    assert.match(sent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, `one traceparent: ${sent}`);
    assert.equal(sent!.split("-")[1], CLIENT_TRACE, "the client's trace continues");
  } finally {
    await edge.stop();
    for (const socket of sockets) if (socket.readyState < WebSocket.CLOSING) socket.close();
    await Promise.all([receiver.close(), upstream.close()]);
  }
});

Deno.test("tracing: with OTEL_DENO an OCAP provider call carries exactly one traceparent", async () => {
  const receiver = startReceiver();
  const provider = startUpstream(() => Response.json({ access_token: "t" }));
  const edge = await startTracedEdge(provider.url, receiver.url);
  try {
    const res = await fetch(tokenRequest(edge.url, { headers: { traceparent: TRACEPARENT } }));
    assert.equal(res.status, 200, await res.text());
    const sent = provider.received[0].headers.get("traceparent");
    assert.match(sent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, `one traceparent: ${sent}`);
    assert.equal(sent!.split("-")[1], CLIENT_TRACE, "the caller's trace continues");
  } finally {
    await edge.stop();
    await Promise.all([receiver.close(), provider.close()]);
  }
});

Deno.test("tracing: with OTEL_DENO a server span carries vestibule.error and vestibule.outcome as the access line does", async () => {
  const receiver = startReceiver();
  const provider = startUpstream(() => Response.json({ access_token: "t" }));
  const edge = await startTracedEdge(provider.url, receiver.url);
  try {
    const scan = await fetch(`${edge.url}/_vestibule/admin`, {
      headers: { "x-request-id": "scan-1" },
    });
    assert.equal(scan.status, 404);
    await scan.body?.cancel();
    const res = await fetch(tokenRequest(edge.url, { headers: { "x-request-id": "ocap-1" } }));
    assert.equal(res.status, 200, await res.text());
    assert.equal(await edge.stop(), 0);

    const span = (id: string) => {
      const found = receiver.spans.find((s) =>
        s.kind === SERVER && attribute(s, "vestibule.request_id") === id
      );
      assert.ok(found, `no server span for ${id} in ${JSON.stringify(receiver.spans)}`);
      return found;
    };
    assert.equal(attribute(span("scan-1"), "vestibule.error"), "not_found");
    assert.equal(attribute(span("scan-1"), "vestibule.rule"), undefined);
    assert.equal(attribute(span("ocap-1"), "vestibule.outcome"), "miss");
    assert.equal(attribute(span("ocap-1"), "vestibule.error"), undefined);
  } finally {
    await edge.stop();
    await Promise.all([receiver.close(), provider.close()]);
  }
});
