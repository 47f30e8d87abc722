/** @module The one origin call an OCAP owner makes for a dedup key: no redirects, own timeout, body buffered. */
import { FRESH_CONNECTIONS, HOP_BY_HOP_HEADERS, onlyChunked } from "../forward.ts";
import { HttpError } from "../http_error.ts";
import { BodyTooLargeError, readBounded } from "../request_body.ts";
import type { OriginAnswer } from "./origin_answer.ts";
import { reportUpstreamFailure } from "../upstream_failure_log.ts";

/** Largest origin body OCAP buffers (8 MiB); a larger answer is 502 `ocap_response_too_large`. */
export const MAX_ORIGIN_BODY_BYTES = 8 * 1024 * 1024;

/**
 * The origin could not be reached or did not answer in time. Not cached: the owner's caller
 * gets it, and callers waiting on the same key retry the exchange themselves.
 */
export class OriginFailure extends HttpError {
  constructor(status: 502 | 504, code: string, message: string, options?: ErrorOptions) {
    super(status, code, message, options);
    this.name = "OriginFailure";
  }
}

/**
 * The origin answered, with more than {@linkcode MAX_ORIGIN_BODY_BYTES}. Not a failure to retry:
 * the exchange happened (a one-time code is spent), so other callers must not call again.
 */
export class OriginAnswerTooLarge extends HttpError {
  constructor(message: string, options?: ErrorOptions) {
    super(502, "ocap_response_too_large", message, options);
    this.name = "OriginAnswerTooLarge";
  }
}

/** The request OCAP sends, already filtered. */
export interface OriginRequest {
  /** Target name from the rules file, for messages. */
  target: string;
  url: URL;
  method: string;
  headers: Headers;
  body: Uint8Array<ArrayBuffer> | null;
}

/**
 * Calls the origin with `redirect: "manual"` and reads the whole body, all under `signal` (the
 * owner's own timeout, never a caller's request signal). Failures become {@linkcode OriginFailure}:
 * 504 `upstream_timeout` when `signal` fired, else 502 `upstream_unavailable`; an answer too
 * large to buffer is {@linkcode OriginAnswerTooLarge}.
 */
export async function callOrigin(
  request: OriginRequest,
  options: { fetch: typeof fetch; signal: AbortSignal; timeoutMs: number },
): Promise<OriginAnswer> {
  /** The status line and headers came: the provider took the request (a one-time code is spent). */
  let answered = false;
  // Deno's fetch sends a request again, unseen, when a pooled keep-alive connection breaks before
  // the answer, even after the provider read it: a second redemption of the code. So every call
  // goes on a connection of its own, as the router's POSTs do ({@linkcode FRESH_CONNECTIONS}); a
  // miss pays for a new connection, which a one-time exchange can afford.
  const headers = new Headers(request.headers);
  if (FRESH_CONNECTIONS) headers.set("connection", "close");
  try {
    const response = await options.fetch(request.url, {
      method: request.method,
      headers,
      body: request.body,
      redirect: "manual",
      signal: options.signal,
      client: FRESH_CONNECTIONS,
    });
    answered = true;
    const body = await readBounded(response.body, MAX_ORIGIN_BODY_BYTES);
    // The origin did answer, so a one-time code is spent: these are shared like any answer.
    if (response.status < 200 || response.status > 599) {
      // fetch passes on a status HTTP does not define (600), which no `Response` can carry.
      return invalidAnswer(request.target, `status ${response.status}, which HTTP does not define`);
    }
    const transfer = response.headers.get("transfer-encoding");
    if (transfer !== null && !onlyChunked(transfer)) {
      // fetch takes off the chunks and leaves the rest (gzip) on the bytes; the header is
      // hop-by-hop, so callers would get them unlabelled.
      return invalidAnswer(request.target, `Transfer-Encoding "${transfer}"`);
    }
    return {
      status: response.status,
      statusText: response.statusText,
      headers: answerHeaders(response.headers, request.method === "HEAD"),
      body,
    };
  } catch (error) {
    if (answered && !(error instanceof BodyTooLargeError)) {
      // Its body broke off or outran the timeout: retried, a second call would redeem the same
      // code again (and get `invalid_grant`), so the failure is shared like any answer.
      return invalidAnswer(
        request.target,
        options.signal.aborted
          ? `a body that did not end within ${options.timeoutMs} ms`
          : "a body that broke off",
      );
    }
    if (options.signal.aborted) {
      throw new OriginFailure(
        504,
        "upstream_timeout",
        `OCAP target "${request.target}" did not answer within ${options.timeoutMs} ms`,
        { cause: error },
      );
    }
    if (error instanceof BodyTooLargeError) {
      throw new OriginAnswerTooLarge(
        `OCAP target "${request.target}" answered with more than ${MAX_ORIGIN_BODY_BYTES} bytes`,
        { cause: error },
      );
    }
    reportUpstreamFailure(request.target, "upstream_unavailable", error);
    throw new OriginFailure(
      502,
      "upstream_unavailable",
      `OCAP target "${request.target}" is unavailable`,
      { cause: error },
    );
  }
}

/**
 * Response headers worth sharing: hop-by-hop ones (and those `Connection` names) dropped, and
 * `Content-Length`, which each caller's `Response` recomputes, except for HEAD, whose empty
 * body it does not describe. `Content-Encoding` stays: OCAP asks for `identity`, so `fetch`
 * never decodes and the bytes match the header.
 */
function answerHeaders(headers: Headers, head: boolean): Array<[string, string]> {
  const named = new Set(
    (headers.get("connection") ?? "").toLowerCase().split(",").map((s) => s.trim()),
  );
  const out: Array<[string, string]> = [];
  for (const [name, value] of headers) {
    if (HOP_BY_HOP_HEADERS.has(name) || named.has(name)) continue;
    if (name === "content-length" && !head) continue;
    out.push([name, value]);
  }
  return out;
}

/**
 * The shared answer to an origin answer no caller could be handed (a status outside 200–599, a
 * transfer coding other than `chunked`): 502 `upstream_invalid`, as the router answers it.
 */
function invalidAnswer(target: string, what: string): OriginAnswer {
  const body = JSON.stringify({
    error: "upstream_invalid",
    message: `OCAP target "${target}" answered with ${what}`,
  });
  return {
    status: 502,
    statusText: "",
    // As vestibule's other error answers: a cache on the caller's side must not keep it.
    headers: [["content-type", "application/json"], ["cache-control", "no-store"]],
    body: new TextEncoder().encode(body),
    error: "upstream_invalid",
  };
}
