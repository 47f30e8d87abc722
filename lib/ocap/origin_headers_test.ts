import assert from "node:assert/strict";
import { originHeaders } from "./origin_headers.ts";

const PIN = "__Host-vestibule-region";

Deno.test("pin leak: OCAP never sends a provider a non-ASCII pair ASP.NET Core reads the pin from", () => {
  // Kestrel with Latin-1 or UTF-8 request headers, and HTTP.sys, hand such bytes to its parser,
  // which reads on after the `\` and finds the pin.
  for (const pair of [`x=a\xe9\\${PIN}=au`, `x=a\xc3\xa9\\${PIN}=au`]) {
    const sent = originHeaders(new Headers({ cookie: `s=1; ${pair}` }), {
      header: "x-vestibule-region",
      cookie: PIN,
    });
    assert.equal(sent.get("cookie"), "s=1", pair);
  }
});

Deno.test("pin leak: OCAP never sends a provider the pin's name URL-encoded (old PHP and Rack decode it)", () => {
  for (const pair of [`%5F%5FHost-vestibule-region=au`, `__Host%2Dvestibule%2Dregion=au`]) {
    const sent = originHeaders(new Headers({ cookie: `s=1; ${pair}` }), {
      header: "x-vestibule-region",
      cookie: PIN,
    });
    assert.equal(sent.get("cookie"), "s=1", pair);
  }
});
