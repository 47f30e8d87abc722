import assert from "node:assert/strict";
import fc from "fast-check";
import type { SuccessRule } from "./compile_rules.ts";
import { checkSuccess, lookupPath, setsLiveCookie } from "./success.ts";

const NOW = Date.parse("2026-11-22T00:00:00Z");
const opts = { now: NOW, bodyLimit: 1 << 20, deadline: Number.POSITIVE_INFINITY };

Deno.test("setsLiveCookie() wants the name, a value and no past expiry", () => {
  assert.equal(setsLiveCookie(["sessionid=abc; Path=/"], "sessionid", NOW), true);
  assert.equal(setsLiveCookie(["sessionid=; Path=/"], "sessionid", NOW), false);
  assert.equal(setsLiveCookie(['sessionid=""; Path=/'], "sessionid", NOW), false);
  assert.equal(setsLiveCookie(["sessionid=abc; Max-Age=0"], "sessionid", NOW), false);
  assert.equal(
    setsLiveCookie(["sessionid=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT"], "sessionid", NOW),
    false,
  );
  assert.equal(
    setsLiveCookie(["sessionid=abc; Expires=Thu, 01 Jan 2099 00:00:00 GMT"], "sessionid", NOW),
    true,
  );
  assert.equal(setsLiveCookie(["xsessionid=abc"], "sessionid", NOW), false);
  assert.equal(setsLiveCookie(["csrftoken=a", "sessionid=b"], "sessionid", NOW), true);
  // RFC 6265 §5.3 step 3: Max-Age wins over Expires.
  assert.equal(
    setsLiveCookie(
      ["sessionid=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60"],
      "sessionid",
      NOW,
    ),
    true,
  );
});

Deno.test("lookupPath() follows dotted paths into objects and arrays", () => {
  const doc = { data: { signup: { ok: true } }, errors: [{ message: "x" }], n: null };
  assert.deepEqual(lookupPath(doc, ["data", "signup", "ok"]), { present: true, value: true });
  assert.deepEqual(lookupPath(doc, ["errors", "0", "message"]), { present: true, value: "x" });
  assert.deepEqual(lookupPath(doc, ["n"]), { present: true, value: null });
  assert.deepEqual(lookupPath(doc, ["n", "x"]), { present: false });
  assert.deepEqual(lookupPath(doc, ["data", "nope"]), { present: false });
  assert.deepEqual(lookupPath("text", ["length"]), { present: false });
});

Deno.test("checkSuccess() holds only when every listed condition holds (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 200, max: 599 }),
      fc.boolean(),
      fc.oneof(fc.constant("not json"), fc.json()),
      fc.boolean(),
      async (status, setsSession, body, useJson) => {
        const nullBody = status === 204 || status === 205 || status === 304;
        const headers = new Headers({ "content-type": "application/json" });
        if (setsSession) headers.append("set-cookie", "sessionid=v; Path=/");
        const rule: SuccessRule = { status: { class: 2 }, setCookie: "sessionid" };
        if (useJson) rule.json = { path: ["ok"], hasEquals: true, equals: true };
        const response = new Response(nullBody ? null : body, { status, headers });
        const verdict = await checkSuccess(rule, response, opts);
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch { /* not JSON */ }
        const jsonOk = !useJson ||
          (!nullBody && typeof parsed === "object" && parsed !== null &&
            (parsed as Record<string, unknown>).ok === true);
        assert.equal(verdict.success, status < 300 && setsSession && jsonOk);
        // Whatever the verdict, the client can still read the body.
        if (!nullBody) assert.equal(await verdict.response.text(), body);
        else await verdict.response.body?.cancel();
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("checkSuccess() with a json rule on a non-JSON body is no success, and the body survives", async () => {
  const rule: SuccessRule = { json: { path: ["errors"], hasEquals: true, equals: [] } };
  const verdict = await checkSuccess(rule, new Response("<html>oops</html>"), opts);
  assert.equal(verdict.success, false);
  assert.equal(await verdict.response.text(), "<html>oops</html>");
});

Deno.test("checkSuccess() exists: true/false looks for the path, not its value", async () => {
  const exists: SuccessRule = { json: { path: ["data", "token"], hasEquals: false, exists: true } };
  const absent: SuccessRule = {
    json: { path: ["data", "token"], hasEquals: false, exists: false },
  };
  const body = '{"data":{"token":null}}';
  assert.equal((await checkSuccess(exists, new Response(body), opts)).success, true);
  assert.equal((await checkSuccess(absent, new Response(body), opts)).success, false);
  assert.equal((await checkSuccess(absent, new Response("{}"), opts)).success, true);
});

Deno.test("checkSuccess() with a json rule on a 204 is no success and does not throw", async () => {
  const rule: SuccessRule = { json: { path: ["ok"], hasEquals: true, equals: true } };
  const verdict = await checkSuccess(rule, new Response(null, { status: 204 }), opts);
  assert.equal(verdict.success, false);
  assert.equal(verdict.response.status, 204);
  assert.equal(verdict.response.body, null);
});
