/** @module Page and server helpers shared by the dev stand-ins (folder-private). */
import type { Hono } from "hono";
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

/** A running stand-in server. */
export interface DevServer {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** Stops listening and waits for open requests to finish. */
  close(): Promise<void>;
}

const STYLE =
  `body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
label{display:block;margin:.5rem 0}.error{color:#b00020;font-weight:bold}
pre{background:#f4f4f4;padding:.5rem}`;

/** Wraps a body in a plain HTML page with a small inline style. */
export function page(
  title: string,
  body: unknown,
): HtmlEscapedString | Promise<HtmlEscapedString> {
  return html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>${title}</title>
    <style>${raw(STYLE)}</style>
  </head>
  <body>
    ${body}
  </body>
</html>`;
}

/** Serves a Hono app on loopback and reports its URL; shared by the dev stand-ins. */
export function serve(app: Hono, options: { port?: number; hostname?: string }): DevServer {
  const hostname = options.hostname ?? "127.0.0.1";
  const server = Deno.serve({ hostname, port: options.port ?? 0, onListen: () => {} }, app.fetch);
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    url: `http://${host}:${server.addr.port}`,
    close: () => server.shutdown(),
  };
}
