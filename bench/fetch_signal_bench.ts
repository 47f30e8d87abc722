/**
 * @module What an upstream timeout costs before any byte is sent. `fetch(url, init)` builds a
 * `Request` from `init`; given a `signal`, Deno 2.9's constructor derives a dependent signal
 * from it (a `WeakRef` and a `FinalizationRegistry` entry, per request), and `fetch` has no other
 * way to give up on an origin that never answers. This is the gap between the floor rows (e) and
 * (f) of the load table, and part of what vestibule pays over a bare pass-through.
 */
const url = "http://127.0.0.1:8000/dashboard?tab=1";
/** The headers vestibule sends for wrk's request. */
const headers: Array<[string, string]> = [
  ["x-forwarded-host", "127.0.0.1:8000"],
  ["x-forwarded-proto", "http"],
  ["x-forwarded-for", "127.0.0.1"],
  ["accept-encoding", "identity"],
];

Deno.bench("new Request(url, init), no signal", { group: "request", baseline: true }, () => {
  new Request(url, { method: "GET", headers, redirect: "manual" });
});

Deno.bench("new Request(url, init) with a timeout signal", { group: "request" }, () => {
  const timeout = new AbortController();
  new Request(url, { method: "GET", headers, redirect: "manual", signal: timeout.signal });
});
