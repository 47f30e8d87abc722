import assert from "node:assert/strict";
import { HttpError } from "../http_error.ts";
import { type OcapTarget, resolveTarget } from "./target_path.ts";

const TARGETS = new Map<string, OcapTarget>([
  ["google", { name: "google", origin: "https://oauth2.googleapis.com", ttlMs: 1, timeoutMs: 1 }],
]);

Deno.test("resolveTarget() maps the rest of the path and the query onto the target origin", () => {
  const { target, url } = resolveTarget("/_ocap/google/oauth2/v4/token?b=2&a=1", "/_ocap", TARGETS);
  assert.equal(target.name, "google");
  assert.equal(url.href, "https://oauth2.googleapis.com/oauth2/v4/token?b=2&a=1");
  assert.equal(
    resolveTarget("/_ocap/google", "/_ocap", TARGETS).url.href,
    TARGETS.get("google")!.origin + "/",
  );
  assert.equal(
    resolveTarget("/_ocap/google/token?redirect_uri=https://app.test/@cb", "/_ocap", TARGETS).url
      .host,
    "oauth2.googleapis.com",
  );
});

Deno.test("resolveTarget() refuses unknown targets with 404 and tricks with 400", () => {
  const status = (raw: string) => {
    try {
      resolveTarget(raw, "/_ocap", TARGETS);
      return 200;
    } catch (error) {
      assert.ok(error instanceof HttpError);
      return error.status;
    }
  };
  assert.equal(status("/_ocap/clever/token"), 404);
  assert.equal(status("/_ocap"), 404);
  // Only what the router routed onto the mount arrives here: a raw path that is not under it
  // got there through dot segments or escapes the router resolved.
  assert.equal(status("/_ocapgoogle/token"), 400);
  assert.equal(status("/other/../_ocap/google/token"), 400);
  assert.equal(status("/_ocap/x/../google/token"), 400);
  assert.equal(status("/_ocap/./google/token"), 400);
  assert.equal(status("/_ocap//google/token"), 400);
  assert.equal(status("/_ocap/%67oogle/token"), 400);
  assert.equal(status("/_ocap/google/../token"), 400);
  assert.equal(status("/_ocap/google/%2E./token"), 400);
  assert.equal(status("/_ocap/google/a%2fb"), 400);
  assert.equal(status("/_ocap/google//evil.test/x"), 400);
  assert.equal(status("/_ocap/google/@evil.test"), 400);
  assert.equal(status("/_ocap/google/token/"), 200, "a trailing slash is an ordinary path");
});
