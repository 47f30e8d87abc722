import assert from "node:assert/strict";
import { listenHost, listenPort, listenRefusal, serveJobs } from "./listen_port.ts";

Deno.test("listenPort() refuses a PORT above 65535 with a message, not Deno's stack trace", () => {
  assert.equal(listenPort("65535"), 65535);
  assert.equal(listenPort("0"), 0);
  for (const raw of ["65536", "99999"]) {
    assert.deepEqual(listenPort(raw), { error: `PORT "${raw}" is not a port number (0–65535)` });
  }
});

Deno.test("listenRefusal() explains a port that is taken or not ours to take", () => {
  for (
    const error of [new Deno.errors.AddrInUse("in use"), new Deno.errors.PermissionDenied("no")]
  ) {
    assert.match(
      listenRefusal(80, error) ?? "",
      /^vestibule: cannot listen on port 80: .* \(set PORT\)$/,
    );
  }
  assert.equal(listenRefusal(80, new TypeError("other")), undefined);
  // A VESTIBULE_HOST that is no address of this machine.
  assert.equal(
    listenRefusal(80, new Deno.errors.AddrNotAvailable("os error 99"), "192.0.2.1"),
    "vestibule: cannot listen on 192.0.2.1: not an address of this machine (set VESTIBULE_HOST)",
  );
});

Deno.test("listenRefusal() names VESTIBULE_HOST for an IPv6 address Deno.serve cannot use, not only one missing here", () => {
  for (const hostname of ["fe80::1", "::1%lo"]) {
    let error: unknown;
    try {
      Deno.serve({ hostname, port: 0, onListen() {} }, () => new Response()).shutdown();
    } catch (thrown) {
      error = thrown;
    }
    assert.match(
      listenRefusal(80, error, hostname) ?? `no refusal for ${error}`,
      new RegExp(`^vestibule: cannot listen on ${hostname}: .+ \\(set VESTIBULE_HOST\\)$`),
    );
  }
  // Another failure on an IPv6 host is not blamed on the host.
  assert.equal(listenRefusal(80, new TypeError("other"), "::1"), undefined);
});

Deno.test("listenPort() listens on 8000 when PORT is unset, as the README says", () => {
  assert.equal(listenPort(undefined), 8000);
});

Deno.test("listenPort() refuses what Number() would read as some other port than the operator wrote", () => {
  // Number() reads "1e3" as 1000, "0x50" as 80, " 80" as 80, "a1" as NaN; six digits with
  // leading zeros are a typo, not port 8000.
  for (const raw of ["a1", "1e3", "0x50", " 80", "80 ", "-1", "+80", "8080.0", "008000"]) {
    assert.deepEqual(listenPort(raw), { error: `PORT "${raw}" is not a port number (0–65535)` });
  }
});

Deno.test("listenHost() takes an IP address to listen on, 0.0.0.0 by default, and refuses anything else", () => {
  assert.equal(listenHost(undefined), "0.0.0.0");
  for (const raw of ["127.0.0.1", "0.0.0.0", "::", "::1", "10.0.0.5"]) {
    assert.equal(listenHost(raw), raw);
  }
  // A name is the resolver's to read; a port or brackets belong elsewhere.
  for (const raw of ["", "localhost", "127.0.0.1:8000", "[::1]", " 127.0.0.1", "0"]) {
    const refused = listenHost(raw);
    assert.ok(typeof refused === "object", raw);
    assert.match(
      refused.error,
      new RegExp(`^VESTIBULE_HOST "${raw.replace(/[.[\]]/g, "\\$&")}" is not an IP address`),
    );
  }
});

Deno.test("serveJobs() takes a number of workers Deno reads, or none, and refuses what Deno would read as one worker", () => {
  for (const raw of [undefined, "1", "4", "04", "+4", "64", "1000"]) {
    assert.equal(serveJobs(raw), raw);
  }
  // A trailing space in a manifest, a typo, a blank entry: Deno serves on one worker, silently.
  // Too large for Deno to read (more than 64 bits): no thread count, one worker.
  for (
    const raw of ["4 ", " 4", "four", "", "0", "00", "-2", "2.5", "18446744073709551616", "1e3"]
  ) {
    assert.deepEqual(serveJobs(raw), {
      error: `DENO_JOBS "${raw}" is not a number of workers (1 or more; unset, one per CPU)`,
    }, JSON.stringify(raw));
  }
});
