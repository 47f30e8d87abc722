import assert from "node:assert/strict";
import { DEFAULT_SHUTDOWN_GRACE_MS, shutdownGraceMs } from "./shutdown_grace.ts";

Deno.test("shutdownGraceMs() waits 25 s when VESTIBULE_SHUTDOWN_GRACE_MS is unset, as the README says", () => {
  assert.equal(DEFAULT_SHUTDOWN_GRACE_MS, 25_000);
  assert.equal(shutdownGraceMs(undefined), 25_000);
});

Deno.test("shutdownGraceMs() reads whole milliseconds, 0 included", () => {
  assert.equal(shutdownGraceMs("0"), 0);
  assert.equal(shutdownGraceMs("55000"), 55_000);
  assert.equal(shutdownGraceMs("2147483647"), 2_147_483_647);
});

Deno.test("shutdownGraceMs() refuses what Number() or setTimeout would read as another wait", () => {
  // "" is 0 to Number(), "25s" NaN, "1e4" 10000, " 100" 100; above 2^31 - 1 ms setTimeout fires at
  // once, which would end every answer in flight at the first signal.
  for (const raw of ["", "25s", "1e4", " 100", "-1", "2.5", "0x10", "2147483648", "99999999999"]) {
    const refused = shutdownGraceMs(raw);
    assert.ok(typeof refused === "object", raw);
    assert.equal(
      refused.error,
      `VESTIBULE_SHUTDOWN_GRACE_MS "${raw}" is not a number of milliseconds ` +
        "(0–2147483647; default 25000)",
    );
  }
});
