/** @module Bench baseline: the smallest Deno `fetch` pass-through proxy, for comparison. */
const port = Number(Deno.env.get("PORT"));
const origin = Deno.env.get("ORIGIN")!;
Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, (req) => {
  const url = new URL(req.url);
  return fetch(origin + url.pathname + url.search, {
    method: req.method,
    headers: req.headers,
    body: req.body,
    redirect: "manual",
  });
});
