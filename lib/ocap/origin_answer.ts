/** @module An origin's complete answer as OCAP shares it, and how it is handed to each caller. */
import { emptyStream, NULL_BODY_STATUSES } from "../forward.ts";

/** A completed origin response, body buffered: what every caller of one dedup key receives. */
export interface OriginAnswer {
  status: number;
  statusText: string;
  /** In order, `Set-Cookie` entries kept separate; hop-by-hop and `Content-Length` removed. */
  headers: Array<[string, string]>;
  body: Uint8Array<ArrayBuffer>;
  /**
   * Set when the answer is OCAP's own error in place of an origin answer it could not pass on
   * (`upstream_invalid`): the access log names it, as for any answer vestibule writes itself.
   */
  error?: string;
}

/** How this caller got its answer; sent back in the `Ocap-Cache` header. */
export type CacheStatus = "miss" | "coalesced" | "hit";

/** A fresh `Response` for one caller, with `Ocap-Cache` set. */
export function answerResponse(answer: OriginAnswer, cache: CacheStatus, method: string): Response {
  const headers = new Headers();
  for (const [name, value] of answer.headers) headers.append(name, value);
  headers.set("ocap-cache", cache);
  // A null body status cannot carry a body: `new Response` throws. A HEAD's length is its GET's,
  // which OCAP does not know: left open (a null body would be written as Content-Length: 0).
  const body = NULL_BODY_STATUSES.has(answer.status)
    ? null
    : method === "HEAD"
    ? emptyStream()
    : answer.body;
  // Stated, not left to Deno.serve, so the access log's `bytes` has it too.
  if (body === answer.body) headers.set("content-length", String(body.byteLength));
  return new Response(body, {
    status: answer.status,
    statusText: answer.statusText,
    headers,
  });
}
