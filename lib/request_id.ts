/** @module The request id: taken from a trusted-looking `X-Request-Id`, else made here. */

/**
 * What an incoming `X-Request-Id` may look like to be kept: 1–64 characters a log line, a header
 * and a shell all take as they are (UUIDs, ULIDs, hex, base64url, `tenant:123`). Anything else,
 * including a CR/LF or a JSON quote meant to forge a log line, is replaced.
 */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:+=\/-]{1,64}$/;

/** Whether an incoming `X-Request-Id` is kept as it is. */
export function isSafeRequestId(incoming: string | null | undefined): incoming is string {
  return !!incoming && SAFE_REQUEST_ID.test(incoming);
}

/** The request id to use: the incoming one when it is safe, else a new UUID (v4). */
export function requestId(incoming: string | null | undefined): string {
  return isSafeRequestId(incoming) ? incoming : crypto.randomUUID();
}
