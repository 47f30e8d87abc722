/** @module Errors vestibule answers itself, and how they are rendered for the client. */

/** An answer vestibule gives on its own behalf, with a stable machine-readable code. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "HttpError";
  }
}

/**
 * Renders an error as `{ "error": code, "message": … }` for clients that accept JSON, else as a
 * short plain-text page, so both API clients and people in a browser get something readable.
 */
export function errorResponse(error: HttpError, accept: string | null): Response {
  const headers = new Headers({ "cache-control": "no-store" });
  if (accept && /\bapplication\/(json|\*)|\*\/\*/.test(accept) && !/text\/html/.test(accept)) {
    headers.set("content-type", "application/json; charset=utf-8");
    return new Response(JSON.stringify({ error: error.code, message: error.message }), {
      status: error.status,
      headers,
    });
  }
  headers.set("content-type", "text/plain; charset=utf-8");
  return new Response(`${error.status} ${error.code}: ${error.message}\n`, {
    status: error.status,
    headers,
  });
}
