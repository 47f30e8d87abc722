import assert from "node:assert/strict";
import { parseRules } from "./load_rules.ts";
import { pinCookie, readPin } from "./pin.ts";

const config = parseRules(
  JSON.stringify({
    regions: { au: { origin: "http://au.test" }, us: { origin: "http://us.test" } },
    default_region: "us",
    rules: [{ name: "app", type: "regional" }],
  }),
  { env: () => undefined },
);
const h = (init: Record<string, string>) => new Headers(init);

Deno.test("readPin() prefers the pin header, then the pin cookie", () => {
  assert.deepEqual(
    readPin(h({ "x-vestibule-region": "au", cookie: "__Host-vestibule-region=us" }), config),
    {
      region: "au",
      source: "pin header",
    },
  );
  assert.deepEqual(readPin(h({ cookie: "a=1; __Host-vestibule-region=us" }), config), {
    region: "us",
    source: "pin cookie",
  });
  assert.deepEqual(readPin(h({ "x-vestibule-region": " AU " }), config), {
    region: "au",
    source: "pin header",
  });
});

Deno.test("readPin() ignores values that are not configured regions", () => {
  assert.equal(readPin(h({ "x-vestibule-region": "mars" }), config), undefined);
  assert.equal(readPin(h({ cookie: "__Host-vestibule-region=eu" }), config), undefined);
  assert.deepEqual(
    readPin(h({ "x-vestibule-region": "mars", cookie: "__Host-vestibule-region=us" }), config),
    {
      region: "us",
      source: "pin cookie",
    },
  );
  assert.equal(
    readPin(h({ cookie: "vestibule-region=au; __host-vestibule-region=au" }), config),
    undefined,
  );
  assert.equal(readPin(h({}), config), undefined);
});

Deno.test("readPin() survives malformed Cookie headers", () => {
  for (
    const cookie of [
      ";;;",
      "=",
      "=au",
      "__Host-vestibule-region",
      "__Host-vestibule-region=%E0%A4%A",
      "\u00ff=\u00ff",
    ]
  ) {
    assert.equal(readPin(h({ cookie }), config), undefined, cookie);
  }
});

Deno.test("pinCookie() sets the attributes browsers need for a private, long-lived pin", () => {
  assert.equal(
    pinCookie("au", config),
    "__Host-vestibule-region=au; Max-Age=31536000; Path=/; HttpOnly; Secure; SameSite=Lax",
  );
});

Deno.test("pinCookie() follows the configured name, lifetime and Secure switch", () => {
  const plain = parseRules(
    JSON.stringify({
      regions: { au: { origin: "http://au.test" } },
      default_region: "au",
      pin: { cookie: "vregion", secure: false, max_age_seconds: 60 },
      rules: [{ name: "app", type: "regional" }],
    }),
    { env: () => undefined },
  );
  assert.equal(pinCookie("au", plain), "vregion=au; Max-Age=60; Path=/; HttpOnly; SameSite=Lax");
});
