/** @module Bench origin: a small fixed answer, optionally after a delay or as a login success. */
const port = Number(Deno.env.get("PORT"));
const delayMs = Number(Deno.env.get("DELAY_MS") ?? 0);
const login = Deno.env.get("LOGIN") === "ok";
const body = "x".repeat(256);
Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, async (req) => {
  if (req.body) await req.body.cancel();
  if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
  if (login) {
    return new Response(null, {
      status: 302,
      headers: { location: "/", "set-cookie": "sessionid=s; Path=/; HttpOnly" },
    });
  }
  return new Response(body, { headers: { "content-type": "text/plain" } });
});
