import assert from "node:assert/strict";
import { parseRules } from "./load_rules.ts";
import type { RequestFacts } from "./match_rule.ts";
import { checkMethodOverride } from "./method_override.ts";
import { BufferedBody } from "./request_body.ts";

const config = parseRules(
  JSON.stringify({
    regions: { us: { origin: "http://us.test" } },
    default_region: "us",
    rules: [
      { name: "posts", type: "regional", match: { methods: ["POST"] } },
      { name: "other", type: "regional" },
    ],
  }),
  { env: () => undefined },
);

/** What checkMethodOverride() makes of a POST with `headers`: "goes on", or its refusal's code. */
async function verdict(headers: Record<string, string>): Promise<string> {
  const url = new URL("http://app.test/x");
  const request = new Request(url, { method: "POST", headers });
  const facts: RequestFacts = {
    method: "POST",
    hostname: url.hostname,
    path: url.pathname,
    searchParams: url.searchParams,
    headers: request.headers,
  };
  try {
    await checkMethodOverride(config, facts, new BufferedBody(request, 4096), config.rules[0]);
    return "goes on";
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

Deno.test("checkMethodOverride(): only a method in letters is a claim; an empty override is none, as to the frameworks", async () => {
  assert.equal(await verdict({ "x-http-method-override": "DELETE" }), "ambiguous_method");
  assert.equal(await verdict({ "x-http-method-override": "" }), "goes on");
  assert.equal(await verdict({ "x-http-method-override": "  " }), "goes on");
  assert.equal(await verdict({ "x-http-method-override": "DEL ETE" }), "goes on");
});
