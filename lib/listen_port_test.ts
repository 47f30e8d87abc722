import assert from "node:assert/strict";
import { listenPort, listenRefusal } from "./listen_port.ts";

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
});
