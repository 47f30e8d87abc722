/** @module Bench comparison: Hono's own proxy helper, the obvious alternative to our hot path. */
import { Hono } from "hono";
import { proxy } from "hono/proxy";

const port = Number(Deno.env.get("PORT"));
const origin = Deno.env.get("ORIGIN")!;
const app = new Hono();
app.all("*", (c) => {
  const url = new URL(c.req.url);
  return proxy(origin + url.pathname + url.search, { raw: c.req.raw });
});
Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, app.fetch);
