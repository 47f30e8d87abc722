import assert from "node:assert/strict";
import { errorResponse, HttpError, prefersJson } from "./http_error.ts";

Deno.test("prefersJson() reads Accept as RFC 9110 weighs it", async (t) => {
  const cases: [string, boolean][] = [
    ["application/json", true],
    ["*/*", true], // curl
    ["application/*", true],
    ["APPLICATION/JSON; charset=utf-8", true],
    ["text/plain", false],
    ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false], // a browser
    // q=0 means "not acceptable".
    ["text/plain, application/json;q=0", false],
    ["*/*;q=0.1, application/json;q=0", false],
    ["application/json;q=0, */*", false],
    // The better weight wins; a tie goes to JSON.
    ["text/plain, application/json;q=0.5", false],
    ["text/plain;q=0.5, application/json", true],
    ["application/json, text/plain", true],
    ["text/*;q=0.2, */*;q=0.5", true],
    // A weight that is no weight counts as 1.
    ["application/json;q=2", true],
    ["application/json;q=abc", true],
    ["text/html;q=0, application/json", true],
    ["", false],
    [",,;", false],
  ];
  for (const [accept, json] of cases) {
    await t.step(JSON.stringify(accept), () => assert.equal(prefersJson(accept), json));
  }
});

Deno.test("errorResponse(): JSON for a client that prefers it, else plain text", async () => {
  const error = new HttpError(502, "upstream_unavailable", 'Upstream "au" is unavailable');
  const json = errorResponse(error, "application/json");
  assert.equal(json.headers.get("content-type"), "application/json; charset=utf-8");
  assert.deepEqual(await json.json(), {
    error: "upstream_unavailable",
    message: 'Upstream "au" is unavailable',
  });
  for (const accept of [null, "text/plain, application/json;q=0"]) {
    const plain = errorResponse(error, accept);
    assert.equal(plain.status, 502);
    assert.equal(plain.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(await plain.text(), '502 upstream_unavailable: Upstream "au" is unavailable\n');
  }
});

Deno.test("prefersJson() reads a weight over 1 as the default 1, as browsers and nginx do", () => {
  // text/plain;q=1.5 is no stronger than application/json (q=1): JSON wins the tie.
  assert.equal(prefersJson("application/json, text/plain;q=1.5"), true);
  assert.equal(prefersJson("application/json;q=0.5, text/plain;q=1.001"), false);
});

// RFC 9110 §5.6.6: parameter names are case-insensitive, so `Q=0` refuses JSON as `q=0` does.
Deno.test("prefersJson() reads the weight's name in any letter case", () => {
  assert.equal(prefersJson("text/plain, application/json;Q=0"), false);
  assert.equal(prefersJson("application/json, text/plain;Q=0"), true);
});
