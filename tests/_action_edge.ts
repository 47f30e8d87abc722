/**
 * @module Test helper for body-matcher attacks: an edge whose `public` rule matches a body with
 * action=view, in front of a catch-all app.
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

/** The body matchers for action=view. */
export const VIEW_FORM = { form: { action: "view" } };
export const VIEW_JSON = { json: { action: "view" } };

/**
 * Starts the edge; `body` is the `public` rule's body matcher (on `POST /act`). `matched` posts
 * a request and says whether that rule took it; `confused` posts one the app reads as
 * action=delete and checks that the rule did not take it.
 */
export function startActionEdge(body: Record<string, unknown>) {
  const pub = startUpstream();
  const app = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: app.url } },
    upstreams: { public: { origin: pub.url } },
    default_region: "us",
    rules: [
      {
        name: "public",
        type: "global",
        upstream: "public",
        match: { methods: ["POST"], path: "^/act$", body },
      },
      { name: "app", type: "regional" },
    ],
  });
  const matched = async (query: string, headers: Record<string, string>, body: BodyInit) => {
    const before = pub.received.length;
    const res = await fetch(`${edge.url}/act${query}`, { method: "POST", headers, body });
    await res.body?.cancel();
    return pub.received.length > before;
  };
  return {
    matched,
    async confused(
      query: string,
      headers: Record<string, string>,
      body: BodyInit,
      why = "the app reads action=delete",
    ) {
      assert.equal(await matched(query, headers, body), false, `${why}; the edge matched view`);
    },
    close: () => Promise.all([edge.close(), pub.close(), app.close()]),
  };
}
