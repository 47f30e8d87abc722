/** @module Builders for OCAP's Deno KV keys, one per key family, so no module spells a key by hand. */

/** Who is calling the origin for a dedup key, and until when (`["ocap","lease",key]`). */
export function leaseKey(key: string): Deno.KvKey {
  return ["ocap", "lease", key];
}

/** The cached answer's head: status, headers, expiry, and the body when it is small (`["ocap","result",key]`). */
export function resultKey(key: string): Deno.KvKey {
  return ["ocap", "result", key];
}

/** One chunk of a large cached body; `writeId` ties the chunks to the head that lists them. */
export function chunkKey(key: string, writeId: string, index: number): Deno.KvKey {
  return ["ocap", "chunk", key, writeId, index];
}

/** Every chunk of one written answer, for `kv.list`. */
export function chunkPrefix(key: string, writeId: string): Deno.KvKey {
  return ["ocap", "chunk", key, writeId];
}
