/** @module explain's text output: who answers, the redirect's status, the lines it leaves out. */
import assert from "node:assert/strict";
import { explainRequest } from "./explain.ts";
import { formatExplanation } from "./explain_text.ts";
import { parseRules } from "./load_rules.ts";

const config = parseRules(
  JSON.stringify({
    regions: { us: { origin: "http://us.invalid" } },
    default_region: "us",
    ocap: {
      path: "/_ocap",
      key: "0123456789abcdef0123",
      targets: { google: { origin: "https://oauth2.googleapis.com" } },
    },
    rules: [{ name: "app", type: "regional" }],
  }),
  { env: () => undefined },
);

const text = async (method: string, url: string) =>
  formatExplanation(await explainRequest({ method, url }, config));

Deno.test("formatExplanation() says who answers a path vestibule serves before the rule table", async (t) => {
  await t.step("vestibule's own endpoint", async () => {
    assert.match(
      await text("GET", "/_vestibule/health"),
      /^Not routed: vestibule itself answers$/m,
    );
  });
  await t.step("OCAP's mount", async () => {
    assert.match(await text("POST", "/_ocap/google/token"), /^Not routed: OCAP answers$/m);
  });
});

Deno.test("formatExplanation() writes (none) when the first rule matched", async () => {
  assert.match(await text("GET", "/dashboard"), /^Rules tried before: \(none\)$/m);
});

Deno.test("formatExplanation() prints no empty 'headers from the rules file' line", async () => {
  const out = await text("GET", "/dashboard");
  assert.match(out, /^Sends to: region "us" at http:\/\/us\.invalid$/m);
  assert.doesNotMatch(out, /headers from the rules file/, out);
});

Deno.test("formatExplanation() gives a redirect's status (a 301 browsers keep)", async () => {
  const redirects = parseRules(
    JSON.stringify({
      regions: { us: { origin: "http://us.invalid" } },
      default_region: "us",
      rules: [{
        name: "old-help",
        type: "global",
        match: { path: "^/help/(.*)$" },
        redirect: { location: "https://help.example.com/$1", status: 301 },
      }],
    }),
    { env: () => undefined },
  );
  const out = formatExplanation(
    await explainRequest({ method: "GET", url: "https://app.example.com/help/x" }, redirects),
  );
  assert.match(out, /^Redirect: 301 to https:\/\/help\.example\.com\/x$/m, out);
});
