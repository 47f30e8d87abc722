/** @module Reads a request body at most once, within the configured limit, for matchers and broadcast. */
import { HttpError } from "./http_error.ts";
import {
  type BodyReadings,
  bodyReadings,
  declaresUtf8,
  mediaTypeParameter,
  plainParameters,
} from "./media_type.ts";
import { MAX_FORM_FIELDS, multipartFields, UTF8_KEEP_BOM } from "./multipart_fields.ts";

/** The body is larger than `body_limit_bytes`: answered with 413 `body_too_large`. */
export class BodyTooLargeError extends RangeError {
  constructor(limit: number) {
    super(`Request body is larger than the limit of ${limit} bytes`);
    this.name = "BodyTooLargeError";
  }
}

/** What {@linkcode readUpTo} got: the chunks and their total, and the reader if it stopped early. */
export interface PartialRead {
  chunks: Uint8Array<ArrayBuffer>[];
  total: number;
  /** Set when the total passed the limit: the stream goes on here, still locked to this reader. */
  rest?: ReadableStreamDefaultReader<Uint8Array<ArrayBuffer>>;
}

/**
 * Reads `body` until it ends or its running total passes `limit`, for at most `timeout.ms`. On a
 * read error or the timeout the stream is cancelled and the error (`timeout.error()`) thrown.
 * Past the limit the reader is handed back with what was read, to be cancelled or replayed.
 *
 * Memory stays near the bytes counted: Deno.serve hands each chunk of a chunked upload over as a
 * view into a 64 KiB buffer of its own, so a body sent one byte per chunk, kept as it came, held
 * 64 KiB per byte (187 MiB for 3,000 bytes). A first chunk is kept as it is (one body, one chunk:
 * no copy); from the second on, the bytes are copied into one buffer that doubles as it fills.
 * The timeout cancels the reader from a timer, rather than racing every read against one promise
 * that would keep each read, and its chunk, reachable until the timeout.
 */
export async function readUpTo(
  body: ReadableStream<Uint8Array<ArrayBuffer>>,
  limit: number,
  timeout?: { ms: number; error: () => Error },
): Promise<PartialRead> {
  const reader = body.getReader();
  let timedOut = false;
  // setTimeout takes a 32-bit delay; beyond that (an infinite deadline) there is no timer.
  const timer = timeout && timeout.ms < 2 ** 31
    ? setTimeout(() => {
      timedOut = true;
      reader.cancel().catch(() => {}); // a pending read then ends as done
    }, Math.max(0, timeout.ms))
    : undefined;
  let first: Uint8Array<ArrayBuffer> | undefined;
  let joined: Uint8Array<ArrayBuffer> | undefined;
  let total = 0;
  const read = (): Uint8Array<ArrayBuffer>[] =>
    joined ? [joined.subarray(0, total)] : first ? [first] : [];
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (timedOut) throw timeout!.error();
      if (done) return { chunks: read(), total };
      if (!first && !joined) first = value;
      else {
        if (!joined || total + value.byteLength > joined.byteLength) {
          const grown = new Uint8Array(Math.max(2 * total, total + value.byteLength, 16384));
          grown.set(joined ? joined.subarray(0, total) : first!);
          joined = grown;
          first = undefined; // its 64 KiB buffer may go
        }
        joined.set(value, total);
      }
      total += value.byteLength;
      if (total > limit) return { chunks: read(), total, rest: reader };
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The chunks as one array (the only chunk itself when there is one). */
export function joinChunks(
  chunks: Uint8Array<ArrayBuffer>[],
  total: number,
): Uint8Array<ArrayBuffer> {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/**
 * Reads the whole stream, refusing early on a `Content-Length` above the limit and otherwise as
 * soon as the running total passes it, so a client cannot make us buffer more than the limit.
 * With `timeoutMs`, a body that has not arrived in that time is cancelled and `HttpError` 408
 * `body_timeout` thrown: a client trickling its body cannot hold a connection and a buffer forever.
 * A body that ends short of its `Content-Length` is 499 `client_closed`: over HTTP/2 `Deno.serve`
 * ends the body of a client that resets its stream or drops the connection as if it were whole
 * (hyperium/hyper#3681), and the cut bytes went on with a `Content-Length` of their own.
 */
export async function readBounded(
  body: ReadableStream<Uint8Array<ArrayBuffer>> | null,
  limit: number,
  declaredLength?: string | null,
  timeoutMs?: number,
): Promise<Uint8Array<ArrayBuffer>> {
  if (declaredLength && Number(declaredLength) > limit) {
    await body?.cancel().catch(() => {});
    throw new BodyTooLargeError(limit);
  }
  if (!body) return new Uint8Array(0);
  const read = await readUpTo(
    body,
    limit,
    timeoutMs === undefined ? undefined : {
      ms: timeoutMs,
      error: () => new HttpError(408, "body_timeout", `The request body took over ${timeoutMs} ms`),
    },
  );
  if (read.rest) {
    await read.rest.cancel().catch(() => {});
    throw new BodyTooLargeError(limit);
  }
  // HTTP/1.1 fails the read instead, and refuses a Content-Length beside a Transfer-Encoding.
  if (declaredLength && read.total < Number(declaredLength)) {
    throw clientClosed(new Error(`${CLIENT_CUT_BODY}: ${read.total} of ${declaredLength} bytes`));
  }
  return joinChunks(read.chunks, read.total);
}

/**
 * A request's whole body, as {@linkcode readBounded} reads it. One cut off over HTTP/2 ends as if
 * whole (hyperium/hyper#3681): short of its `Content-Length` it is refused there; without one
 * (neither header, so HTTP/2 when it has bytes), by the client's signal ({@linkcode clientCut}),
 * made here at the latest.
 */
export async function readRequestBody(
  request: Request,
  limit: number,
  timeoutMs?: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const declared = request.headers.get("content-length");
  const unframed = declared === null && request.headers.get("transfer-encoding") === null;
  if (unframed) void request.signal;
  const bytes = await readBounded(request.body, limit, declared, timeoutMs);
  // An empty one too: a POST whose client left before its first DATA frame went on as empty.
  if (unframed && await clientCut(request)) {
    throw clientClosed(new Error(CLIENT_CUT_BODY));
  }
  return bytes;
}

/**
 * The message of the error a request body cut off by its client ends with, which `fetch` keeps
 * on the cause of its own failure (`requestBodyBroke` in forward.ts).
 */
export const CLIENT_CUT_BODY = "The client cut its request body off";

/**
 * How long, at most, the end of a body with no `Content-Length` (HTTP/2) waits for its client's
 * signal to say the client left ({@linkcode clientCut}). `Deno.serve` ends such a body cleanly
 * when the client resets its stream or drops the connection (hyperium/hyper#3681), and aborts
 * the request's signal a macrotask or so later; a body sent whole goes on after this wait.
 */
export const CUT_CHECK_MS = 10;

/**
 * Whether the client of a request whose body has just ended has left (and so cut the body off),
 * waiting at most `ms` for its signal. That signal reports it only if it was made before the
 * client left: `viewRequest` makes it for every request that may carry such a body.
 */
export function clientCut(
  client: { readonly signal: AbortSignal },
  ms = CUT_CHECK_MS,
): Promise<boolean> {
  const { signal } = client;
  if (signal.aborted) return Promise.resolve(true);
  return new Promise((resolve) => {
    const settle = (cut: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(cut);
    };
    const onAbort = () => settle(true);
    const timer = setTimeout(settle, ms, false);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The error for a client that went away before its answer (mid-upload, or while the upstream was
 * still thinking): nginx's 499, so the log and the metrics blame neither the upstream (502) nor
 * vestibule (500).
 */
export function clientClosed(cause: unknown): HttpError {
  return new HttpError(499, "client_closed", "The client went away before the answer", { cause });
}

/**
 * A request body read lazily and at most once: matchers share the bytes and their parsed views,
 * and the same bytes are replayed upstream.
 */
export class BufferedBody {
  #bytes?: Promise<Uint8Array<ArrayBuffer>>;
  /** `null`: a charset the body cannot be read in. */
  #text?: string | null;
  #json?: { value: unknown } | null;

  constructor(
    private readonly request: Request,
    private readonly limit: number,
    /** How long the whole body may take to arrive (`body_timeout_ms`). */
    private readonly timeoutMs?: number,
  ) {}

  /**
   * Whether the body is sent with a `Content-Encoding` (other than `identity`): Express inflates
   * gzip and deflate before it reads a form, so matchers read no such body as text, form or JSON.
   */
  get encoded(): boolean {
    const coding = this.request.headers.get("content-encoding")?.trim().toLowerCase();
    return coding !== undefined && coding !== "" && coding !== "identity";
  }

  /** The `Content-Type`, trimmed; `null` when none or an empty one (none, as Rack reads it). */
  get contentType(): string | null {
    return this.request.headers.get("content-type")?.trim() || null;
  }

  /** How apps read this body by its type and method ({@linkcode bodyReadings}). */
  get readings(): BodyReadings | undefined {
    return bodyReadings(this.contentType, this.request.method);
  }

  /** Whether the body has been (or is being) read; then it must be replayed from `bytes()`. */
  get consumed(): boolean {
    return this.#bytes !== undefined;
  }

  /**
   * The body bytes; throws {@linkcode BodyTooLargeError}, `HttpError` 408 `body_timeout`, or
   * `HttpError` 499 `client_closed` when the client's body breaks off.
   */
  bytes(): Promise<Uint8Array<ArrayBuffer>> {
    this.#bytes ??= this.#read().catch((error) => {
      throw error instanceof BodyTooLargeError || error instanceof HttpError
        ? error
        : clientClosed(error);
    });
    return this.#bytes;
  }

  #read(): Promise<Uint8Array<ArrayBuffer>> {
    return readRequestBody(this.request, this.limit, this.timeoutMs);
  }

  /**
   * The body as text, in the charset its `Content-Type` declares (UTF-8 when it declares none);
   * undecodable bytes are replaced, never thrown. `undefined` when the charset is one vestibule
   * cannot read as the app would ({@linkcode decoderFor}).
   */
  async text(): Promise<string | undefined> {
    const bytes = await this.bytes();
    if (this.#text === undefined) {
      const decoder = decoderFor(this.request.headers.get("content-type"));
      this.#text = decoder ? decoder.decode(bytes) : null;
    }
    return this.#text ?? undefined;
  }

  /**
   * The parsed JSON body, or `undefined` when it is not JSON every app parses alike (see
   * {@linkcode strictJson}): a bad body is no match, not a crash.
   */
  async json(): Promise<unknown> {
    if (this.#json === undefined) {
      // A body that cannot be read is an error, not "not JSON". JSON is UTF-8 (RFC 8259 §8.1).
      const bytes = await this.bytes();
      const plain = !this.encoded &&
        declaresUtf8(this.request.headers.get("content-type") ?? "");
      this.#json = plain ? strictJson(bytes) : null;
    }
    return this.#json?.value;
  }

  /**
   * The urlencoded or multipart form fields by the names sent (`fieldValuesAsAppsRead` adds the
   * copies apps file under a name), or `undefined` when the body is not a valid form or has more
   * than {@linkcode MAX_FORM_FIELDS} fields.
   */
  async form(): Promise<Map<string, string[]> | undefined> {
    const type = this.contentType;
    const bytes = await this.bytes();
    // Only a type every app reads as this form: `multipart/form-datax` is none to PHP, Rack and
    // Django, `…-urlencoded; x=a+json` JSON to Laravel, `…-urlencoded x` (cut at the space by PHP
    // alone) none to Rack, Django, Tomcat and Express, and the app then reads the query instead.
    const readings = this.readings;
    if (readings === undefined || type === null || !declaresUtf8(type) || this.encoded) {
      return undefined;
    }
    if (type.split(";", 1)[0].trim().toLowerCase() !== readings.media) return undefined;
    let fields: Map<string, string[]> | undefined;
    if (readings.media === "application/x-www-form-urlencoded") {
      const params = urlencodedParams(bytes);
      if (!params) return undefined;
      fields = new Map();
      for (const [key, value] of params) {
        const copies = fields.get(key);
        if (copies) copies.push(value); // not a copy per copy: 500,000 copies fit in 1 MiB
        else fields.set(key, [value]);
      }
    } else if (readings.media === "multipart/form-data") {
      fields = await multipartFields(bytes, type);
    }
    return fields;
  }
}

/**
 * A urlencoded body's parameters as frameworks read them, or `undefined` past
 * {@linkcode MAX_FORM_FIELDS}. A leading BOM stays part of the first name, as Django's
 * `bytes.decode("utf-8")` keeps it.
 */
export function urlencodedParams(bytes: Uint8Array): URLSearchParams | undefined {
  const text = UTF8_KEEP_BOM.decode(bytes);
  return occursAtLeast(text, "&", MAX_FORM_FIELDS) ? undefined : new URLSearchParams(text);
}

/**
 * The decoder `TextDecoder` has for the first `charset` of `contentType` (UTF-8 without one), or
 * `undefined` for a label it does not know or maps to its `replacement` decoder.
 */
export function charsetDecoder(contentType: string | null): TextDecoder | undefined {
  return labelDecoder(contentType ? mediaTypeParameter(contentType, "charset") : undefined);
}

/** {@linkcode charsetDecoder} for the label itself. */
function labelDecoder(charset: string | undefined): TextDecoder | undefined {
  if (!charset) return new TextDecoder();
  try {
    const decoder = new TextDecoder(charset);
    return decoder.encoding === "replacement" ? undefined : decoder;
  } catch {
    return undefined; // a label TextDecoder does not know
  }
}

/** The WHATWG encodings that are neither one byte per character nor UTF-8 or UTF-16. */
export const MULTI_BYTE_ENCODINGS: ReadonlySet<string> = new Set([
  "gbk",
  "gb18030",
  "big5",
  "euc-jp",
  "iso-2022-jp",
  "shift_jis",
  "euc-kr",
]);

/**
 * The decoder a body's text is read with for a `regex` matcher, or `undefined` where Django could
 * read other text from the same bytes (it decodes with Python's codecs, and reads UTF-8 for a label
 * they do not know): parameters apps do not all split alike ({@linkcode plainParameters}: a `"` in
 * a name, a `\`, a `charset` given twice or as `charset*`, where Django keeps the last, counts
 * quotes its own way, and strips U+0085), a label the Encoding Standard does not know or sends to
 * its replacement decoder (`utf-7`, `iso-2022-kr`), a UTF-16 label other than `utf-16le` and
 * `utf-16be` (`ucs-2` and `unicode` are UTF-16 here, unknown to Python; Python's `utf-16` follows a
 * big-endian byte order mark), and the multi-byte charsets, whose labels Python knows in part and
 * in which a lead byte can swallow the ASCII letter after it. Read as the router read them before,
 * `action=+AGQ-elete` (UTF-7) or `action=delete` (as `ucs-2`) had no `delete` for a rule's regex,
 * while the app read `action=delete`.
 */
export function decoderFor(contentType: string | null): TextDecoder | undefined {
  if (contentType === null) return new TextDecoder();
  const parameters = plainParameters(contentType);
  if (!parameters) return undefined;
  const charset = parameters.get("charset");
  if (charset === undefined) return new TextDecoder();
  const decoder = labelDecoder(charset);
  if (!decoder || MULTI_BYTE_ENCODINGS.has(decoder.encoding)) return undefined;
  if (decoder.encoding.startsWith("utf-16") && !/^utf-16[lb]e$/i.test(charset.trim())) {
    return undefined;
  }
  return decoder;
}

/** Whether `text` holds `char` at least `count` times; stops counting there. */
export function occursAtLeast(text: string, char: string, count: number): boolean {
  let seen = 0;
  for (let at = text.indexOf(char); at !== -1; at = text.indexOf(char, at + 1)) {
    if (++seen >= count) return true;
  }
  return false;
}

/**
 * The deepest nesting json_decode takes at its default depth of 512, which Laravel's input()
 * uses: the parser counts from 1, so 511 levels (php.net: depth 3 refuses 3 levels).
 */
const MAX_JSON_DEPTH = 511;

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * `bytes` parsed as JSON when PHP's `json_decode` (Laravel's `input()`) would parse it too, else
 * `null`: it refuses a leading byte order mark, bytes that are not UTF-8, an escaped surrogate
 * without its pair, and nesting deeper than 511, where `JSON.parse` after a lenient decode takes
 * them and Laravel would read the query instead.
 */
export function strictJson(bytes: Uint8Array): { value: unknown } | null {
  let text: string;
  try {
    text = STRICT_UTF8.decode(bytes); // a leading BOM stays, and JSON.parse refuses it
  } catch {
    return null;
  }
  if (!decodableJsonText(text)) return null;
  try {
    return { value: JSON.parse(text) };
  } catch {
    return null;
  }
}

/**
 * Whether JSON text nests at most {@linkcode MAX_JSON_DEPTH} deep and pairs every surrogate
 * escape, read off the text with its strings scanned escape by escape: `\\ud83d` is an escaped
 * backslash and plain text, and a lone `\ud800` under a key that a later duplicate replaces is
 * still one json_decode refuses (JSON.parse keeps only the last copy, so the parsed value cannot
 * tell). The text is valid UTF-8, so a surrogate can only come from an escape.
 */
function decodableJsonText(text: string): boolean {
  let depth = 0;
  let inString = false;
  let highPending = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!inString) {
      if (c === 0x22) inString = true; // `"`
      else if (c === 0x5b || c === 0x7b) { // `[` `{`
        if (++depth > MAX_JSON_DEPTH) return false;
      } else if (c === 0x5d || c === 0x7d) depth--;
      continue;
    }
    if (c === 0x5c && text[i + 1] === "u") { // `\u`
      const code = parseInt(text.slice(i + 2, i + 6), 16);
      const low = code >= 0xdc00 && code <= 0xdfff;
      if (highPending !== low) return false;
      highPending = code >= 0xd800 && code <= 0xdbff;
      i += 5;
      continue;
    }
    if (highPending) return false;
    if (c === 0x5c) i++; // another escape: its character is not the string's end
    else if (c === 0x22) inString = false;
  }
  return !highPending;
}
