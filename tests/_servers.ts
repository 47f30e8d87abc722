/** @module Test helpers: real servers on loopback that record what they received. */
import assert from "node:assert/strict";
import { type AppDeps, createApp } from "../app.ts";
import { parseRules } from "../lib/load_rules.ts";

/** One request as an upstream actually received it. */
export interface Received {
  method: string;
  path: string;
  query: string;
  headers: Headers;
  body: Uint8Array;
}

/** A loopback server; `received` lists every request it got. */
export interface TestServer {
  url: string;
  port: number;
  received: Received[];
  close(): Promise<void>;
}

/**
 * Starts an upstream on 127.0.0.1:0. The handler sees the recorded request; the default answers
 * 200 with a small JSON echo.
 */
export function startUpstream(
  handler?: (req: Request, received: Received) => Response | Promise<Response>,
  options: { recordBody?: boolean } = {},
): TestServer {
  const received: Received[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const body = options.recordBody === false || !req.body
      ? new Uint8Array()
      : new Uint8Array(await req.arrayBuffer());
    const record = {
      method: req.method,
      path: url.pathname,
      query: url.search,
      headers: req.headers,
      body,
    };
    received.push(record);
    if (handler) return await handler(req, record);
    return Response.json({ path: url.pathname });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    received,
    close: () => server.shutdown(),
  };
}

/** Starts vestibule itself on 127.0.0.1:0 from a rules object (env references resolved from `env`). */
export function startVestibule(
  rules: unknown,
  options: { env?: Record<string, string>; deps?: Partial<AppDeps> } = {},
): TestServer & { app: ReturnType<typeof createApp> } {
  const config = parseRules(JSON.stringify(rules), { env: (name) => options.env?.[name] });
  // Access lines would drown the test output; tests that assert on them pass their own `log`.
  const app = createApp({ config, log: () => {}, ...options.deps });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  return {
    app,
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    received: [],
    close: () => server.shutdown(),
  };
}

/** Rules for one region `us` at `origin` and one catch-all regional rule, plus `extra` fields. */
export const oneRegion = (origin: string, extra: Record<string, unknown> = {}) => ({
  regions: { us: { origin } },
  default_region: "us",
  rules: [{ name: "app", type: "regional" }],
  ...extra,
});

/** Rules with regions au and us (the default) and one catch-all regional rule, `extra` merged in. */
export const twoRegions = (au: string, us: string, extra: Record<string, unknown> = {}) => ({
  regions: { au: { origin: au }, us: { origin: us } },
  default_region: "us",
  rules: [{ name: "app", type: "regional" }],
  ...extra,
});

/**
 * Whether vestibule answers its health check at `base`: its own answer, not just any server's (a
 * child that could not take its port leaves it to whatever took it).
 */
export async function answersHealth(base: string): Promise<boolean> {
  const response = await fetch(`${base}/_vestibule/health`);
  const body = await response.text();
  return response.status === 200 && body === JSON.stringify({ status: "ok" });
}

/**
 * Waits until a vestibule process at `base` answers its health check (about 10 s at most), or
 * until `exited()` says the process is gone.
 */
export async function untilHealthy(base: string, exited = () => false): Promise<void> {
  for (let i = 0;; i++) {
    if (exited()) throw new Error(`vestibule exited before it answered at ${base}`);
    try {
      if (await answersHealth(base)) return;
      if (i > 200) throw new Error(`something other than vestibule answers at ${base}`);
    } catch (error) {
      if (i > 200) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * For {@linkcode untilHealthy}: whether `child` has exited, so a vestibule that could not start
 * fails the test at once instead of after ten seconds of polling a port nothing listens on.
 */
export function exitedOf(child: Deno.ChildProcess): () => boolean {
  let exited = false;
  child.status.then(() => exited = true);
  return () => exited;
}

/** The head of a raw answer ({@linkcode rawRequest}), lower-cased. */
export function answerHead(answer: string): string {
  return answer.slice(0, answer.indexOf("\r\n\r\n")).toLowerCase();
}

/** The body of a raw answer ({@linkcode rawRequest}), its chunks joined when it came in chunks. */
export function answerBody(answer: string): string {
  let rest = answer.slice(answer.indexOf("\r\n\r\n") + 4);
  if (!/transfer-encoding: chunked/.test(answerHead(answer))) return rest;
  let out = "";
  for (let size; (size = parseInt(rest, 16)) > 0;) {
    const start = rest.indexOf("\r\n") + 2;
    out += rest.slice(start, start + size);
    rest = rest.slice(start + size + 2);
  }
  return out;
}

/** Sends `text` as it is on a new connection and returns everything the server answered. */
export async function rawRequest(
  port: number,
  message: string | ReadonlyArray<string | Uint8Array>,
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  // Parts: text (as UTF-8) and bytes as they are, such as a gzip body inside chunked framing.
  for (const part of typeof message === "string" ? [message] : message) {
    await conn.write(typeof part === "string" ? new TextEncoder().encode(part) : part);
  }
  return new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
}

/**
 * Sends `text` on a new connection and returns the first bytes of the answer (or `"(none)"`
 * after `limitMs`) with how long they took: the server may keep the socket open for the rest of
 * a body it was promised, so reading to the end would not finish.
 */
export async function firstAnswer(
  port: number,
  text: string,
  limitMs = 5000,
): Promise<{ answer: string; ms: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const started = performance.now();
    await conn.write(new TextEncoder().encode(text));
    const buffer = new Uint8Array(4096);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = await Promise.race([
      conn.read(buffer),
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), limitMs)),
    ]);
    clearTimeout(timer);
    const answer = read ? new TextDecoder().decode(buffer.subarray(0, read)) : "(none)";
    return { answer, ms: performance.now() - started };
  } finally {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

/**
 * An upstream that answers every connection with the same raw bytes, then closes it: for answers
 * no HTTP library would write (malformed framing, odd statuses). `answer` gets the upstream's URL;
 * text is sent in UTF-8, bytes as they are.
 */
export function rawUpstream(
  answer: (url: string) => string | Uint8Array,
  /** `hold`: each answer waits for it, so callers can pile up on a call in flight. */
  options: { hold?: Promise<void> } = {},
): { url: string; readonly connections: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  const answered = answer(url);
  const bytes = typeof answered === "string" ? new TextEncoder().encode(answered) : answered;
  let connections = 0;
  const served = (async () => {
    for await (const conn of listener) {
      connections++;
      try {
        await conn.read(new Uint8Array(65536));
        await options.hold;
        await conn.write(bytes);
      } catch { /* vestibule hung up */ }
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  })();
  return {
    url,
    get connections() {
      return connections;
    },
    close: async () => {
      listener.close();
      await served.catch(() => {});
    },
  };
}

/** A request as {@linkcode droppingOrigin} read it. */
export interface DroppingOriginRequest {
  head: string;
  /** The body, de-chunked when it came chunked. */
  body: string;
  /** How long the connection sat idle since its last answer; undefined for its first request. */
  idleMs?: number;
}

/**
 * A raw origin that reads each request whole (framed by `Content-Length` or chunked) and records
 * it, then writes the raw answer `answer` gives for it, keeping the connection, or for `null` drops
 * the connection without answering: a kept-alive connection that breaks after the origin read the
 * request (a worker killed mid-request, a proxy in front of it closing it at the wrong moment), or,
 * by `idleMs`, as an origin's idle timeout closes it just as the request goes out.
 */
export function droppingOrigin(answer: (request: DroppingOriginRequest) => string | null) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: DroppingOriginRequest[] = [];
  const conns = new Set<Deno.Conn>();
  const decoder = new TextDecoder();
  async function serve(conn: Deno.Conn): Promise<void> {
    let text = "";
    let answeredAt: number | undefined;
    const buffer = new Uint8Array(65536);
    while (true) {
      const end = text.indexOf("\r\n\r\n");
      const head = end === -1 ? "" : text.slice(0, end);
      const chunked = /\r\ntransfer-encoding: *chunked/i.test(head);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      const last = chunked ? text.indexOf("\r\n0\r\n\r\n", end) : -1;
      const bodyEnd = chunked ? (last === -1 ? -1 : last + 7) : end + 4 + length;
      if (end === -1 || bodyEnd === -1 || text.length < bodyEnd) {
        const n = await conn.read(buffer);
        if (n === null) return;
        text += decoder.decode(buffer.subarray(0, n));
        continue;
      }
      const raw = text.slice(end + 4, bodyEnd);
      const body = chunked
        ? raw.replace(/(?:^|\r\n)[0-9a-f]+\r\n/gi, "").replace(/\r\n$/, "")
        : raw;
      const idleMs = answeredAt === undefined ? undefined : performance.now() - answeredAt;
      const request = { head, body, idleMs };
      text = text.slice(bodyEnd);
      seen.push(request);
      const answered = answer(request);
      if (answered === null) return; // the answer never leaves
      await conn.write(new TextEncoder().encode(answered));
      answeredAt = performance.now();
    }
  }
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      serve(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* already closed */ }
      });
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    seen,
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      await serving;
    },
  };
}

/**
 * The environment that keeps a vestibule process a test starts (`main.ts`, `deno task serve`) on
 * loopback: by default it listens on every interface, as in production, and its `fetch` would
 * send upstream calls through a proxy the machine's environment names (blank is unset).
 */
export const LOOPBACK_ONLY = {
  VESTIBULE_HOST: "127.0.0.1",
  HTTP_PROXY: "",
  HTTPS_PROXY: "",
  ALL_PROXY: "",
  http_proxy: "",
  https_proxy: "",
  all_proxy: "",
} as const;

/** The local addresses of the sockets listening on `port` (Linux `/proc/net/tcp` and `tcp6`). */
export async function listeningAddresses(port: number): Promise<string[]> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const addresses: string[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of (await Deno.readTextFile(table)).split("\n").slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      // State 0A is LISTEN.
      if (state === "0A" && local?.endsWith(`:${hexPort}`)) addresses.push(local.split(":")[0]);
    }
  }
  return addresses;
}

/**
 * An upstream that refuses every connection: nothing listens on loopback port 4, and no server a
 * test starts on port 0 can be given it, as it is a privileged port. A free port picked and closed
 * could be (about once in 7,000 binds here): vestibule then proxied to itself (508) or a stand-in
 * answered for the dead region. Not 1 or 9, which fetch refuses to call at all (bad ports).
 */
export const DEAD_ORIGIN = "http://127.0.0.1:4";

/**
 * A port free now, for a child process to listen on: bind one, note it, close it. (Not an
 * upstream that must stay dead: that is {@linkcode DEAD_ORIGIN}.)
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * A server that accepts connections and never answers (a hung server, a firewall that swallows
 * packets): what a client's connect or header timeout is for.
 */
export function silentServer(): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) held.push(conn);
    } catch { /* closed */ }
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      await accepting;
      for (const conn of held) conn.close();
    },
  };
}

/**
 * `promise`, or "pending" if it has not settled within `ms`. One given up on may still fail
 * later (a read of a connection the test then closes): that is no error of the test's.
 */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | "pending"> {
  promise.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"pending">((resolve) =>
    timer = setTimeout(() => resolve("pending"), ms)
  );
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `promise`'s value, or an `AssertionError` saying `what` did not happen within `ms`: a wait for a
 * close or a message that never comes fails the test instead of hanging it until CI's timeout.
 */
export async function settles<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const got = await within(promise, ms);
  assert.ok(got !== "pending", `${what} within ${ms} ms`);
  return got as T;
}

/**
 * One region's upstream, vestibule in front of it logging to `logs`, and the same rules compiled
 * for explain: what the router does and what explain says, side by side.
 */
export function routerAndRules() {
  const us = startUpstream();
  const rules = {
    regions: { us: { origin: us.url } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  };
  const logs: string[] = [];
  const edge = startVestibule(rules, { deps: { log: (line) => logs.push(line) } });
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  return { us, edge, logs, config };
}
