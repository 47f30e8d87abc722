/**
 * @module Bench floor: the least any correct forwarder does beyond the bare pass-through. It
 * copies the headers into a list (dropping `Host` and `Connection`) and adds `X-Forwarded-*`;
 * with `TIMEOUT=1` it also gives each upstream call a timeout, the way vestibule must (an abort
 * signal, since `fetch` has no other way to give up on a hanging origin).
 */
const port = Number(Deno.env.get("PORT"));
const origin = Deno.env.get("ORIGIN")!;
const timeout = Deno.env.get("TIMEOUT") === "1";
Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, (req, info) => {
  const url = new URL(req.url);
  const headers: Array<[string, string]> = [];
  req.headers.forEach((value, name) => {
    if (name !== "host" && name !== "connection") headers.push([name, value]);
  });
  headers.push(
    ["x-forwarded-host", url.host],
    ["x-forwarded-proto", "http"],
    ["x-forwarded-for", info.remoteAddr.hostname],
  );
  const init: RequestInit = { method: req.method, headers, body: req.body, redirect: "manual" };
  if (!timeout) return fetch(origin + url.pathname + url.search, init);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 30_000);
  return fetch(origin + url.pathname + url.search, { ...init, signal: abort.signal })
    .finally(() => clearTimeout(timer));
});
