/**
 * @module Test helpers: WebSocket peers written byte for byte on TCP, for what a browser's API
 * cannot do: read nothing, or flood without waiting.
 */
import assert from "node:assert/strict";
import type { AppDeps } from "../app.ts";
import { oneRegion, settles, startVestibule } from "./_servers.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();

export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/** One binary frame of `size` zero bytes; masked (with a zero key), as a client must send. */
export function binaryFrame(size: number, masked: boolean): Uint8Array {
  const frame = new Uint8Array((masked ? 14 : 10) + size);
  frame[0] = 0x82;
  frame[1] = (masked ? 0x80 : 0) | 127;
  new DataView(frame.buffer).setBigUint64(2, BigInt(size));
  return frame;
}

/** One unmasked text frame of `text` in UTF-8, as an upstream sends it (its length in fewest bytes). */
export function textFrame(text: string): Uint8Array<ArrayBuffer> {
  const payload = new TextEncoder().encode(text);
  const head = payload.length < 126 ? 2 : payload.length < 65536 ? 4 : 10;
  const frame = new Uint8Array(head + payload.length);
  const view = new DataView(frame.buffer);
  frame[0] = 0x81;
  if (head === 2) frame[1] = payload.length;
  else if (head === 4) {
    frame[1] = 126;
    view.setUint16(2, payload.length);
  } else {
    frame[1] = 127;
    view.setBigUint64(2, BigInt(payload.length));
  }
  frame.set(payload, head);
  return frame;
}

/** Reads exactly `n` bytes, or `null` when the connection ends first. */
export async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  for (let at = 0; at < n;) {
    const got = await conn.read(out.subarray(at));
    if (got === null) return null;
    at += got;
  }
  return out;
}

/**
 * Reads frames until a close frame or the end of the connection: the payload bytes of the data
 * frames before it, and the close code and reason (undefined when the connection just ended or
 * was reset).
 */
export async function readUntilClose(
  conn: Deno.Conn,
): Promise<{ bytes: number; code?: number; reason?: string }> {
  const read = { bytes: 0 };
  try {
    return await readFrames(conn, read);
  } catch (error) {
    // A peer that closes with unread bytes in its buffer resets the connection.
    if (error instanceof Deno.errors.ConnectionReset) return read;
    throw error;
  }
}

async function readFrames(conn: Deno.Conn, read: { bytes: number }) {
  let bytes = 0;
  while (true) {
    const head = await readExactly(conn, 2);
    if (!head) return { bytes };
    let length = head[1] & 0x7f;
    if (length === 126) length = new DataView((await readExactly(conn, 2))!.buffer).getUint16(0);
    else if (length === 127) {
      length = Number(new DataView((await readExactly(conn, 8))!.buffer).getBigUint64(0));
    }
    const mask = head[1] & 0x80 ? await readExactly(conn, 4) : undefined;
    const payload = await readExactly(conn, length);
    if (!payload) return { bytes };
    if ((head[0] & 0x0f) === 0x8) {
      if (mask) payload.forEach((b, i) => (payload[i] = b ^ mask[i % 4]));
      return {
        bytes,
        code: length >= 2 ? (payload[0] << 8) | payload[1] : undefined,
        reason: length > 2 ? new TextDecoder().decode(payload.subarray(2)) : undefined,
      };
    }
    bytes += length;
    read.bytes = bytes;
  }
}

/** Opens a WebSocket to vestibule on `port` by hand and returns the connection after the 101. */
export async function rawWebSocketClient(port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(
    conn,
    encoder.encode(
      "GET /cable HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ),
  );
  const reading = (async () => {
    let head = "";
    while (!head.includes("\r\n\r\n")) {
      const byte = await readExactly(conn, 1); // byte by byte: frames may follow at once
      assert.ok(byte, "the handshake ended early");
      head += String.fromCharCode(byte[0]);
    }
    return head;
  })();
  assert.match(
    await settles(reading, 10_000, "no answer to the client's handshake"),
    /^HTTP\/1\.1 101 /,
  );
  return conn;
}

/** Reads a client's WebSocket handshake from `conn`; resolves with its `Sec-WebSocket-Accept`. */
export async function readHandshake(conn: Deno.Conn): Promise<string> {
  let request = "";
  while (!request.includes("\r\n\r\n")) {
    const byte = await readExactly(conn, 1);
    assert.ok(byte, "the handshake ended early");
    request += String.fromCharCode(byte[0]);
  }
  const key = /sec-websocket-key: *(\S+)/i.exec(request)![1];
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** The 101 that accepts a handshake, with `extraHeaders` and then `after` (frames) in the same bytes. */
export function switchingProtocols(
  accept: string,
  extraHeaders = "",
  after: Uint8Array = new Uint8Array(),
): Uint8Array {
  const head = encoder.encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n${extraHeaders}\r\n`,
  );
  const bytes = new Uint8Array(head.length + after.length);
  bytes.set(head);
  bytes.set(after, head.length);
  return bytes;
}

/**
 * A WebSocket upstream written by hand: `accepted` resolves with the connection of the first
 * handshake it answers; `after` (frames) goes out in the same write as its 101.
 */
export function rawWebSocketUpstream(extraHeaders = "", after?: Uint8Array) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = (async () => {
    const conn = await listener.accept();
    await writeAll(conn, switchingProtocols(await readHandshake(conn), extraHeaders, after));
    return conn;
  })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    accepted,
    close: () => listener.close(),
  };
}

/** A raw client and a raw upstream joined through vestibule's regional relay. */
export interface RawRelay {
  /** The client's socket, past its handshake. */
  client: Deno.Conn;
  /** The upstream's socket, past its 101. */
  upstream: Deno.Conn;
  edge: ReturnType<typeof startVestibule>;
}

/** The bearer token of the metrics of a {@linkcode withRawRelay} edge. */
export const RELAY_METRICS_TOKEN = "relay-metrics-token-0123456789";

/**
 * Runs `fn` with a client relayed to `up` (a fresh {@linkcode rawWebSocketUpstream} unless given)
 * by a vestibule in front of it, and closes all of them after.
 */
export async function withRawRelay(
  fn: (relay: RawRelay) => Promise<void>,
  up: { url: string; accepted: Promise<Deno.Conn>; close(): void } = rawWebSocketUpstream(),
  deps: Partial<AppDeps> = {},
): Promise<void> {
  const edge = startVestibule(oneRegion(up.url), {
    deps: { metricsToken: RELAY_METRICS_TOKEN, ...deps },
  });
  const client = await rawWebSocketClient(edge.port);
  const upstream = await settles(up.accepted, 10_000, "the upstream got no handshake");
  try {
    await fn({ client, upstream, edge });
  } finally {
    client.close();
    upstream.close();
    up.close();
    await edge.close();
  }
}
