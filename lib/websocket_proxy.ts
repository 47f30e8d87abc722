/**
 * @module WebSocket upgrades on `regional` and `global` proxy rules: vestibule opens its own
 * WebSocket to the upstream with the headers any request to it gets (pin stripped, cookies
 * filtered, `X-Forwarded-*`), then upgrades the client and relays messages both ways. `fetch`
 * cannot carry an upgrade, so without this a WebSocket reached the app as a plain GET.
 */
import type { Upstream } from "./compile_rules.ts";
import { type CookiePolicy, upstreamHeaders } from "./forward.ts";
import { type HeaderList, HTTP_TOKEN, trimOws } from "./header_list.ts";
import { HttpError } from "./http_error.ts";
import { clientClosed } from "./request_body.ts";
import type { RouteContext } from "./route_context.ts";
import { activeTraceparent } from "./tracing.ts";
import { reportUpstreamFailure } from "./upstream_failure_log.ts";

/**
 * Whether the request asks to become a WebSocket (RFC 6455 §4.1), as `Deno.upgradeWebSocket`
 * reads it: `Connection: Upgrade\xA0` is no upgrade there, and was let through to open the
 * upstream's socket before Deno refused the client's (a 500 any client could raise).
 */
export function isWebSocketUpgrade(method: string, headers: HeaderList): boolean {
  return method === "GET" && headers.get("upgrade")?.toLowerCase() === "websocket" &&
    listItems(headers.get("connection")).some((token) => token.toLowerCase() === "upgrade");
}

/** The items of a comma-separated header value, trimmed as HTTP trims them, empty ones dropped. */
function listItems(value: string | null): string[] {
  if (value === null) return [];
  return value.split(",").map(trimOws).filter(Boolean);
}

/**
 * The client's offered subprotocols, or `HttpError` 400 `bad_websocket` for a handshake the
 * router refuses before any upstream is asked (no key, a version other than 13, subprotocols
 * that are not tokens or offered twice: Deno's WebSocket client throws on those). Explain asks
 * the same question.
 */
export function checkWebSocketHandshake(headers: HeaderList): string[] {
  if (!headers.get("sec-websocket-key") || headers.get("sec-websocket-version") !== "13") {
    throw new HttpError(400, "bad_websocket", "The WebSocket handshake lacks a key or version 13");
  }
  // Trimmed as HTTP trims: `trim()` would make `chat\xA0` a token.
  const protocols = listItems(headers.get("sec-websocket-protocol"));
  // RFC 6455 §4.1: each offered subprotocol is a token, offered once; Deno's client compares
  // them in lower case.
  const distinct = new Set(protocols.map((p) => p.toLowerCase()));
  if (!protocols.every((p) => HTTP_TOKEN.test(p)) || distinct.size < protocols.length) {
    throw new HttpError(
      400,
      "bad_websocket",
      "The WebSocket handshake offers invalid subprotocols",
    );
  }
  return protocols;
}

/**
 * Connects to the upstream first, so a refused or silent upstream is the client's 502 or 504,
 * then upgrades the client with the subprotocol the upstream chose. The upstream's own handshake
 * answer (a 401, its `Set-Cookie`) is not visible through the WebSocket API: any failure to
 * connect is 502 `upstream_unavailable`.
 */
export async function proxyWebSocket(
  ctx: RouteContext,
  upstream: Upstream,
  cookies: CookiePolicy,
  timeoutMs: number,
): Promise<Response> {
  const protocols = checkWebSocketHandshake(ctx.headers);
  const { headers } = upstreamHeaders(ctx.headers, upstream, cookies, ctx.forward);
  // The WebSocket client writes its own handshake: key, version, extensions, protocols.
  const handshake = headers.filter(([name]) =>
    !name.startsWith("sec-websocket-") && name !== "accept-encoding"
  );
  // With OpenTelemetry on, `upstreamHeaders` left the client's traceparent to `fetch`, which
  // adds its own; the WebSocket client adds none, so the request's span is named here.
  const traceparent = activeTraceparent();
  if (traceparent) handshake.push(["traceparent", traceparent]);
  const url = upstream.origin.replace(/^http/, "ws") + ctx.pathAndQuery;
  const started = performance.now();
  const toUpstream = new WebSocket(url, { protocols, headers: handshake });
  toUpstream.binaryType = "arraybuffer";
  // Listening from the start: a message (or a close) sent right after the handshake can be
  // dispatched before the code after `await opened()` runs, and would be lost.
  const early: Early = { messages: [] };
  const hold = (event: MessageEvent) => void early.messages.push(event.data);
  const holdClose = (event: CloseEvent) => void (early.close = event);
  toUpstream.addEventListener("message", hold);
  toUpstream.addEventListener("close", holdClose);
  await opened(toUpstream, upstream, timeoutMs, ctx.request.signal);
  ctx.log.upstreamMs = performance.now() - started;
  // Deno's WebSocket client takes any subprotocol the server names (RFC 6455 §4.1 says fail):
  // passed on, the client would get one it never offered.
  if (toUpstream.protocol && !protocols.includes(toUpstream.protocol)) {
    toUpstream.close();
    throw new HttpError(
      502,
      "upstream_unavailable",
      `Upstream "${upstream.id}" chose a WebSocket subprotocol the client did not offer`,
    );
  }
  // Nor does it fail on an extension it never offered (it offers none): passed on, the first
  // compressed (RSV1) frame would end the session with 1005 and nothing in the log.
  if (toUpstream.extensions) {
    toUpstream.close();
    throw new HttpError(
      502,
      "upstream_unavailable",
      `Upstream "${upstream.id}" switched on a WebSocket extension nobody offered`,
    );
  }
  let upgraded: ReturnType<typeof Deno.upgradeWebSocket>;
  try {
    // Upgrading a connection that is already gone made Deno.serve's shutdown hang.
    if (ctx.request.signal.aborted) throw clientClosed(ctx.request.signal.reason);
    // Deno.upgradeWebSocket splits the offer on ", " only (so "a,b" offers one protocol): the
    // upstream chose from the offer as parsed above, and that choice is what the client gets.
    upgraded = Deno.upgradeWebSocket(ctx.request);
    if (toUpstream.protocol) {
      upgraded.response.headers.set("sec-websocket-protocol", toUpstream.protocol);
    }
  } catch (error) {
    toUpstream.close();
    throw error;
  }
  const { socket, response } = upgraded;
  socket.binaryType = "arraybuffer";
  toUpstream.removeEventListener("message", hold);
  toUpstream.removeEventListener("close", holdClose);
  relay(
    socket,
    toUpstream,
    early,
    () => ctx.onWebSocketOverloaded(upstream.id),
    ctx.webSocketBudget,
  );
  return response;
}

/** Resolves when `ws` opens; throws 504 after `timeoutMs`, 502 when it fails or closes first. */
function opened(
  ws: WebSocket,
  upstream: Upstream,
  timeoutMs: number,
  client: AbortSignal,
): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const clientGone = () => {
    reject(clientClosed(client.reason));
    ws.close();
  };
  if (client.aborted) clientGone();
  client.addEventListener("abort", clientGone, { once: true });
  const timer = setTimeout(() => {
    reject(
      new HttpError(
        504,
        "upstream_timeout",
        `Upstream "${upstream.id}" did not accept the WebSocket within ${timeoutMs} ms`,
      ),
    );
    ws.close();
  }, timeoutMs);
  const failed = () =>
    reject(
      new HttpError(502, "upstream_unavailable", `Upstream "${upstream.id}" refused the WebSocket`),
    );
  // Deno's reason (a refused connection, the status it answered) goes to stderr, as a failed
  // fetch's does; the access line says only upstream_unavailable. Listeners go once settled, so
  // the close of a timed-out or abandoned handshake is not reported.
  const errored = (event: Event) => {
    const { error, message } = event as ErrorEvent;
    reportUpstreamFailure(upstream.id, "upstream_unavailable", error ?? message);
    failed();
  };
  ws.addEventListener("open", () => resolve(), { once: true });
  ws.addEventListener("error", errored, { once: true });
  ws.addEventListener("close", failed, { once: true });
  return promise.finally(() => {
    clearTimeout(timer);
    client.removeEventListener("abort", clientGone);
    ws.removeEventListener("error", errored);
    ws.removeEventListener("close", failed);
  });
}

/** What the upstream sent before the client's socket was open. */
interface Early {
  messages: Array<string | ArrayBuffer>;
  close?: CloseEvent;
}

/**
 * How many bytes one socket may hold unsent before the relay watches its reader. The WebSocket
 * API cannot stop reading the other side, so a peer that reads nothing (or a slow phone behind a
 * chatty app) would otherwise grow vestibule's memory without bound; a reader that drains a burst
 * or a large message is left alone.
 */
export const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
/** How long a socket may stay above {@linkcode MAX_BUFFERED_BYTES} before the relay gives up. */
export const SLOW_READER_MS = 5_000;
/** Above this many bytes unsent the relay gives up at once. */
export const HARD_BUFFERED_BYTES = 64 * 1024 * 1024;

/**
 * The close code for a relay that gave up on a peer not reading: 1013 "try again later" in the
 * private range (the WebSocket API may send only 1000 and 3000–4999).
 */
export const RELAY_OVERLOADED = 4013;

/**
 * What the relays of one isolate may queue together for readers that have fallen behind. The
 * limits of each socket alone leave a thousand clients that read nothing just under 16 MiB each,
 * 16 GB between them; over this budget the relay queueing most gives up with
 * {@linkcode RELAY_OVERLOADED}.
 */
export const RELAY_BUDGET_BYTES = 256 * 1024 * 1024;

/** A socket's queue, as {@linkcode RelayBudget} sees it. */
export interface QueueHolder {
  /** Bytes waiting for the socket's reader now: in the relay, and in the socket past 1 MiB. */
  readonly queued: number;
  /** Closes the relay; its queue is let go (its holder tells the budget so). */
  giveUp(reason: string): void;
}

/** The bytes every relay of one app queues, kept under a limit by closing the largest queue. */
export class RelayBudget {
  #queued = 0;
  /** The holders with something queued: only they can be given up on. */
  readonly #holders = new Set<QueueHolder>();
  constructor(readonly limit: number = RELAY_BUDGET_BYTES) {}

  /** Bytes queued by every relay together. */
  get queued(): number {
    return this.#queued;
  }

  /** `holder` queued `bytes` more (fewer, when negative); gives up on the largest over the limit. */
  change(holder: QueueHolder, bytes: number): void {
    this.#queued += bytes;
    if (holder.queued > 0) this.#holders.add(holder);
    else this.#holders.delete(holder);
    while (this.#queued > this.limit && this.#holders.size > 0) {
      let largest: QueueHolder | undefined;
      for (const h of this.#holders) if (!largest || h.queued > largest.queued) largest = h;
      largest!.giveUp("relay memory budget exceeded");
      // A holder that kept its queue would be picked again: never loop on it.
      this.#holders.delete(largest!);
    }
  }
}

/**
 * Relays messages both ways and passes a close on with its code and reason, after the messages
 * sent before it. What the upstream sends before the client's socket is open waits for it. A
 * socket that holds more than {@linkcode HARD_BUFFERED_BYTES} unsent, or more than
 * {@linkcode MAX_BUFFERED_BYTES} for {@linkcode SLOW_READER_MS}, closes both with
 * {@linkcode RELAY_OVERLOADED}; so does the relay with the largest queue when `budget` is spent.
 */
function relay(
  client: WebSocket,
  upstream: WebSocket,
  early: Early,
  onOverloaded: () => void,
  budget: RelayBudget,
): void {
  // Both sides stop and close at once, so a relay gives up once.
  const overloaded = (reason: string) => {
    onOverloaded();
    toClient.stop();
    toUpstream.stop();
    for (const ws of [client, upstream]) {
      if (ws.readyState === WebSocket.OPEN) ws.close(RELAY_OVERLOADED, reason);
    }
  };
  const toClient = paced(client, overloaded, budget);
  const toUpstream = paced(upstream, overloaded, budget);
  upstream.addEventListener("message", (event) => {
    if (client.readyState === WebSocket.OPEN) toClient.send(event.data);
    else if (client.readyState === WebSocket.CONNECTING) early.messages.push(event.data);
  });
  upstream.addEventListener("close", (event) => {
    toUpstream.stop();
    early.close = event;
    if (client.readyState === WebSocket.OPEN) toClient.afterSent(() => closeOther(client, event));
  });
  client.addEventListener("open", () => {
    for (const data of early.messages.splice(0)) {
      // Given up on midway (the budget): the rest would be counted for a relay that is gone.
      if (client.readyState !== WebSocket.OPEN) break;
      toClient.send(data);
    }
    const { close } = early;
    if (close) toClient.afterSent(() => closeOther(client, close));
  });
  client.addEventListener("message", (event) => {
    if (upstream.readyState === WebSocket.OPEN) toUpstream.send(event.data);
  });
  client.addEventListener("close", (event) => {
    toClient.stop();
    toUpstream.afterSent(() => closeOther(upstream, event));
  });
  // An error is followed by a close event, which passes it on.
}

/**
 * A socket is handed the next message only while it holds less than this unsent; the rest waits
 * in the relay. A socket keeps what it was handed until its peer reads it, even once closed (the
 * close frame waits behind it, and the WebSocket API cannot abort): what waits in the relay is
 * let go when the relay gives up.
 */
const HANDED_BYTES = 1024 * 1024;
/**
 * The most queued messages handed over in one go: handing a backlog of 200,000 small messages at
 * once held the isolate, and every other request on it, for 1.2 s. The rest go on the next look,
 * so a backlog of small messages drains at up to 100,000 a second per socket.
 */
const HANDED_PER_LOOK = 1024;
/** How often a socket with messages waiting, or above {@linkcode MAX_BUFFERED_BYTES}, is looked at. */
const WATCH_MS = 10;
/**
 * How often it is looked at while its reader took nothing since the last look: every 10 ms, a
 * client that stopped reading with a backlog under the limits cost 100 wakeups a second for as long
 * as it kept its connection.
 */
const STALLED_WATCH_MS = 250;

/**
 * A `send` to `to` that calls `overloaded` instead when `to`'s reader has fallen behind, an
 * `afterSent` for what to do once everything sent so far is handed over (a close), and a `stop` for when
 * either side closes. Looked at after each send too, and by a timer while messages wait or it is
 * over the limit: a burst followed by silence brings no next message, and judged only then, 90 MiB
 * held for a client that read nothing stayed held.
 */
function paced(
  to: WebSocket,
  overloaded: (reason: string) => void,
  budget: RelayBudget,
): { send(data: string | ArrayBuffer): void; afterSent(done: () => void): void; stop(): void } {
  // A queue read from `next`: `shift()` copies a long array whole, and a peer sending tiny
  // messages to a slow reader can queue hundreds of thousands of them.
  let waiting: Array<string | ArrayBuffer> = [];
  let next = 0;
  let waitingBytes = 0;
  // What the socket holds beyond HANDED_BYTES (one large message handed whole), counted too.
  let handedOver = 0;
  let afterwards: (() => void) | undefined;
  let overSince: number | undefined;
  let watch: ReturnType<typeof setInterval> | undefined;
  let watchMs = 0;
  let lastBuffered = 0;
  const watchEvery = (ms: number) => {
    if (watch !== undefined && watchMs === ms) return;
    clearInterval(watch);
    watch = setInterval(check, ms);
    watchMs = ms;
  };
  const holder: QueueHolder = {
    get queued() {
      return waitingBytes + handedOver;
    },
    giveUp: overloaded,
  };
  const stop = () => {
    clearInterval(watch);
    watch = undefined;
    overSince = undefined;
    waiting = [];
    next = 0;
    const released = waitingBytes + handedOver;
    waitingBytes = 0;
    handedOver = 0;
    afterwards = undefined;
    if (released > 0) budget.change(holder, -released);
  };
  /** Hands over what `to` may take now; whether it took anything. */
  const hand = (): boolean => {
    const first = next;
    const last = next + HANDED_PER_LOOK;
    let handedBytes = 0;
    while (
      next < waiting.length && next < last && to.readyState === WebSocket.OPEN &&
      to.bufferedAmount < HANDED_BYTES
    ) {
      const data = waiting[next];
      // Let go once handed: a queue that never drains empty (a reader that keeps up, a few MiB
      // behind) held every message it had handed, uncounted, until 1,024 of them were.
      waiting[next++] = "";
      handedBytes += sizeOf(data);
      to.send(data);
    }
    const handed = next > first;
    if (handed) {
      waitingBytes -= handedBytes;
      budget.change(holder, -handedBytes);
    }
    if (next === waiting.length) {
      waiting.length = 0;
      next = 0;
    } else if (next > 1024 && next * 2 > waiting.length) {
      waiting = waiting.slice(next);
      next = 0;
    }
    if (waiting.length === 0 && afterwards) {
      const done = afterwards;
      afterwards = undefined;
      done();
    }
    return handed;
  };
  /** Hands what it can to `to`, and gives up on a reader too far behind. */
  const check = (): void => {
    const handed = hand();
    let buffered = to.bufferedAmount;
    const over = to.readyState === WebSocket.OPEN ? Math.max(0, buffered - HANDED_BYTES) : 0;
    if (over !== handedOver) {
      const change = over - handedOver;
      handedOver = over;
      budget.change(holder, change);
      // The budget may have closed this relay: a closing socket reports 0, judged below as such.
      buffered = to.bufferedAmount;
    }
    const moving = handed || buffered < lastBuffered;
    lastBuffered = buffered;
    const unsent = waitingBytes + buffered;
    if (unsent <= MAX_BUFFERED_BYTES) {
      overSince = undefined;
      if (waiting.length > 0 || handedOver > 0) watchEvery(moving ? WATCH_MS : STALLED_WATCH_MS);
      else if (watch !== undefined) {
        clearInterval(watch); // nothing to stop on the usual, quick path
        watch = undefined;
      }
      return;
    }
    overSince ??= performance.now();
    if (unsent > HARD_BUFFERED_BYTES || performance.now() - overSince > SLOW_READER_MS) {
      // Each its own reason: a peer (and a test on a slow machine) can tell which limit it was.
      return overloaded(
        unsent > HARD_BUFFERED_BYTES ? "relay buffer over 64 MiB" : "reader too slow",
      );
    }
    watchEvery(moving ? WATCH_MS : STALLED_WATCH_MS);
  };
  return {
    send(data) {
      // The usual case: nothing waits and the socket takes it, so nothing is queued or counted.
      if (
        waiting.length === 0 && to.readyState === WebSocket.OPEN && to.bufferedAmount < HANDED_BYTES
      ) {
        to.send(data);
      } else {
        const size = sizeOf(data);
        waiting.push(data);
        waitingBytes += size;
        budget.change(holder, size);
      }
      check();
    },
    afterSent(done) {
      afterwards = done;
      check();
    },
    stop,
  };
}

/**
 * A message's size as the limits count it: a string's UTF-8 bytes, as `bufferedAmount` counts it
 * once handed (its UTF-16 length counted "あ" as 1 byte of its 3, and 30 MiB of such text queued
 * for a client that read nothing never reached the limits).
 */
const sizeOf = (data: string | ArrayBuffer) =>
  typeof data !== "string"
    ? data.byteLength
    : NON_ASCII.test(data)
    ? utf8Length(data)
    : data.length;
const NON_ASCII = /[\u0080-\uffff]/;

function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) bytes += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return bytes;
}

/**
 * Closes `other` as `event` closed its peer. The WebSocket API may send only 1000 and
 * 3000–4999; any other code (1001 going away, 1006 abnormal…) closes without one. A reason over
 * the 123 bytes a close frame can carry (Deno's reader accepts longer ones) is dropped:
 * `close()` would throw inside this event listener, uncaught, and end the process.
 */
function closeOther(other: WebSocket, event: CloseEvent): void {
  if (other.readyState !== WebSocket.OPEN) return; // a connecting client closes on "open"
  const sendable = event.code === 1000 || (event.code >= 3000 && event.code <= 4999);
  if (!sendable) return other.close();
  const fits = new TextEncoder().encode(event.reason).byteLength <= MAX_CLOSE_REASON_BYTES;
  other.close(event.code, fits ? event.reason : undefined);
}

/** A close frame's payload is at most 125 bytes: a 2-byte code and 123 of reason. */
const MAX_CLOSE_REASON_BYTES = 123;
