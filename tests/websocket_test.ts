/** WebSockets through regional and global proxy rules, against real upstream WebSocket servers. */
import assert from "node:assert/strict";
import { startVestibule } from "./_servers.ts";

const PIN = "__Host-vestibule-region";

/** An upstream that accepts WebSockets, echoes messages and records each handshake's headers. */
function startWebSocketUpstream(
  options: { refuse?: boolean; greeting?: string; closeWith?: [number, string] } = {},
) {
  const handshakes: Headers[] = [];
  const sockets: WebSocket[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    handshakes.push(new Headers(req.headers));
    if (options.refuse || req.headers.get("upgrade") !== "websocket") {
      return new Response("no websockets here", { status: 403 });
    }
    const offered = req.headers.get("sec-websocket-protocol")?.split(",").map((p) => p.trim());
    const { socket, response } = Deno.upgradeWebSocket(req, {
      protocol: offered?.includes("chat.v2") ? "chat.v2" : undefined,
    });
    sockets.push(socket);
    socket.onopen = () => {
      if (options.greeting) socket.send(options.greeting);
      if (options.closeWith) socket.close(...options.closeWith);
    };
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    handshakes,
    close: async () => {
      for (const socket of sockets) if (socket.readyState < WebSocket.CLOSING) socket.close();
      await server.shutdown();
    },
  };
}

/** Opens a client WebSocket and collects what it receives until it closes. */
function connect(url: string, options: { protocols?: string[]; headers?: HeadersInit } = {}) {
  const ws = new WebSocket(url, options);
  ws.binaryType = "arraybuffer";
  const received: Array<string | ArrayBuffer> = [];
  const next: Array<(data: string | ArrayBuffer) => void> = [];
  ws.onmessage = (event) => {
    const waiter = next.shift();
    if (waiter) waiter(event.data);
    else received.push(event.data);
  };
  const opened = new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("the WebSocket failed to open"));
  });
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", resolve));
  return {
    ws,
    opened,
    closed,
    message: () =>
      received.length > 0
        ? Promise.resolve(received.shift()!)
        : new Promise<string | ArrayBuffer>((resolve) => next.push(resolve)),
  };
}

const wsUrl = (httpUrl: string) => httpUrl.replace(/^http/, "ws");

Deno.test("websocket: a regional route relays text and binary both ways, with the upstream's subprotocol", async () => {
  const up = startWebSocketUpstream({ greeting: "hello from us" });
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  const client = connect(`${wsUrl(edge.url)}/cable?room=1`, { protocols: ["chat.v1", "chat.v2"] });
  try {
    await client.opened;
    assert.equal(client.ws.protocol, "chat.v2");
    assert.equal(await client.message(), "hello from us", "a message sent at once is not lost");
    client.ws.send("ping");
    assert.equal(await client.message(), "ping");
    client.ws.send(new Uint8Array([0, 255, 7]));
    assert.deepEqual(
      new Uint8Array(await client.message() as ArrayBuffer),
      new Uint8Array([0, 255, 7]),
    );
    assert.equal(up.handshakes[0].get("sec-websocket-protocol"), "chat.v1, chat.v2");
  } finally {
    client.ws.close();
    await client.closed;
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("websocket: pin leak, the upstream handshake never carries the pin and gets forwarding headers", async () => {
  const au = startWebSocketUpstream();
  const us = startWebSocketUpstream();
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  });
  const client = connect(wsUrl(edge.url), {
    headers: { cookie: `sessionid=s; ${PIN}=au`, "x-vestibule-region": "au" },
  });
  try {
    await client.opened;
    assert.equal(us.handshakes.length, 0, "the pinned region answered");
    const got = au.handshakes[0];
    assert.equal(got.get("cookie"), "sessionid=s");
    assert.equal(got.get("x-vestibule-region"), null);
    assert.equal(got.get("x-forwarded-for"), "127.0.0.1");
    assert.equal(got.get("x-forwarded-host"), new URL(edge.url).host);
  } finally {
    client.ws.close();
    await client.closed;
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("websocket: the upstream's close code and reason reach the client", async () => {
  const up = startWebSocketUpstream({ closeWith: [4001, "session expired"] });
  const edge = startVestibule({
    upstreams: { cable: { origin: up.url } },
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [{ name: "cable", type: "global", match: { path: "^/cable$" }, upstream: "cable" }],
  });
  const client = connect(`${wsUrl(edge.url)}/cable`);
  try {
    const closed = await client.closed;
    assert.equal(closed.code, 4001);
    assert.equal(closed.reason, "session expired");
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("websocket: an upstream that refuses the upgrade is a 502 for the client, logged as such", async () => {
  const up = startWebSocketUpstream({ refuse: true });
  const lines: Record<string, unknown>[] = [];
  const edge = startVestibule({
    regions: { us: { origin: up.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  }, { deps: { log: (line) => lines.push(JSON.parse(line)) } });
  try {
    const res = await fetch(`${edge.url}/cable`, {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
      },
    });
    await res.body?.cancel();
    assert.equal(res.status, 502);
    assert.equal(lines.at(-1)!.error, "upstream_unavailable");
    assert.equal(up.handshakes.length, 1);
  } finally {
    await Promise.all([edge.close(), up.close()]);
  }
});
