/**
 * @module Reads and writes cached OCAP answers in Deno KV. A KV value holds at most 64 KiB, so a
 * larger body is split into chunks written in the same atomic operation as the head that lists
 * them: a reader sees the whole answer or none of it.
 */
import { chunkKey, chunkPrefix, resultKey } from "./kv_keys.ts";
import type { OriginAnswer } from "./origin_answer.ts";

/**
 * Largest body OCAP caches in KV (512 KiB): with the head it stays below the 800 KiB a single
 * atomic operation may write (denokv `MAX_TOTAL_MUTATION_SIZE_BYTES`). A larger answer still
 * reaches its caller and the callers waiting in the same isolate; see {@linkcode NOT_SHARED}.
 */
export const MAX_CACHED_BODY_BYTES = 512 * 1024;
/** Bodies up to this size live in the head itself: one KV read per cache hit. */
const INLINE_BODY_BYTES = 32 * 1024;
/** Header bytes above this make an answer uncacheable (the head must stay below 64 KiB). */
const MAX_HEADER_BYTES = 16 * 1024;
/** Chunk size, below the 64 KiB value limit (denokv `MAX_VALUE_SIZE_BYTES`). */
const CHUNK_BYTES = 60 * 1024;

/** Stored instead of an answer too large to cache, so other isolates fail closed instead of calling again. */
export const NOT_SHARED = "not_shared";

/** The head of a cached answer as stored under {@linkcode resultKey}. */
interface ResultHead {
  v: 1;
  /** Milliseconds since the epoch; after it the entry counts as absent even if still readable. */
  expires_at: number;
  write_id: string;
  /** `NOT_SHARED`: the answer was too large to cache. */
  kind: "answer" | typeof NOT_SHARED;
  status?: number;
  status_text?: string;
  headers?: Array<[string, string]>;
  /** {@linkcode OriginAnswer.error}: OCAP's own answer to an origin answer it could not pass on. */
  error?: string;
  /** The body when it is small; otherwise `chunks` chunks under {@linkcode chunkKey}. */
  body?: Uint8Array<ArrayBuffer>;
  chunks?: number;
  size?: number;
}

/** What a read found: the head's versionstamp (also for expired heads) and the live answer, if any. */
export interface StoredResult {
  versionstamp: string | null;
  answer: OriginAnswer | typeof NOT_SHARED | null;
}

/** Interprets a head entry read by the caller; loads the chunks of a large body. */
export async function readResult(
  kv: Deno.Kv,
  key: string,
  entry: Deno.KvEntryMaybe<unknown>,
  now: number,
): Promise<StoredResult> {
  const head = entry.value as ResultHead | null;
  const versionstamp = entry.versionstamp;
  if (!head || head.v !== 1 || head.expires_at <= now) return { versionstamp, answer: null };
  if (head.kind === NOT_SHARED) return { versionstamp, answer: NOT_SHARED };
  let body = head.body;
  if (body === undefined) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of kv.list<Uint8Array>({ prefix: chunkPrefix(key, head.write_id) })) {
      chunks.push(chunk.value);
    }
    // Chunks may expire a little before their head; then the answer is gone as a whole.
    if (chunks.length !== head.chunks) return { versionstamp, answer: null };
    body = new Uint8Array(head.size ?? 0);
    let offset = 0;
    for (const chunk of chunks) {
      body.set(chunk, offset);
      offset += chunk.byteLength;
    }
    if (offset !== head.size) return { versionstamp, answer: null };
  }
  return {
    versionstamp,
    answer: {
      status: head.status!,
      statusText: head.status_text ?? "",
      headers: head.headers ?? [],
      body,
      ...(head.error === undefined ? {} : { error: head.error }),
    },
  };
}

/**
 * Adds a {@linkcode NOT_SHARED} head: the origin answered, but nobody else may have the answer,
 * and nobody may call the origin again for it before the TTL passes.
 */
export function addNotShared(
  op: Deno.AtomicOperation,
  key: string,
  options: { expiresAt: number; ttlMs: number },
): void {
  const head: ResultHead = {
    v: 1,
    expires_at: options.expiresAt,
    write_id: crypto.randomUUID(),
    kind: NOT_SHARED,
  };
  op.set(resultKey(key), head, { expireIn: Math.max(1, Math.ceil(options.ttlMs)) });
}

/**
 * Adds the writes of one cached answer to `op`: the head, plus chunks for a large body, each
 * with `expireIn` so nothing accumulates. Answers above {@linkcode MAX_CACHED_BODY_BYTES} (or
 * with huge headers) are stored as {@linkcode NOT_SHARED}. Returns whether the answer itself was stored.
 */
export function addResult(
  op: Deno.AtomicOperation,
  key: string,
  answer: OriginAnswer,
  options: { expiresAt: number; ttlMs: number },
): boolean {
  const writeId = crypto.randomUUID();
  const expireIn = Math.max(1, Math.ceil(options.ttlMs));
  const base = { v: 1 as const, expires_at: options.expiresAt, write_id: writeId };
  const headerBytes = answer.headers.reduce((sum, [n, v]) => sum + n.length + v.length + 4, 0);
  if (answer.body.byteLength > MAX_CACHED_BODY_BYTES || headerBytes > MAX_HEADER_BYTES) {
    addNotShared(op, key, options);
    return false;
  }
  const head: ResultHead = {
    ...base,
    kind: "answer",
    status: answer.status,
    status_text: answer.statusText,
    headers: answer.headers,
    size: answer.body.byteLength,
  };
  if (answer.error !== undefined) head.error = answer.error;
  if (answer.body.byteLength <= INLINE_BODY_BYTES) {
    // A copy of exactly the body: a view would serialize its whole underlying buffer.
    head.body = answer.body.slice();
  } else {
    head.chunks = Math.ceil(answer.body.byteLength / CHUNK_BYTES);
    for (let i = 0; i < head.chunks; i++) {
      const chunk = answer.body.slice(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);
      op.set(chunkKey(key, writeId, i), chunk, { expireIn });
    }
  }
  op.set(resultKey(key), head, { expireIn });
  return true;
}
