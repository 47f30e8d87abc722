/**
 * Hazard: the GraphQL spec (https://spec.graphql.org/draft/#sec-Errors) says a response's
 * `errors` entry, if present, holds at least one error, and is absent when none was raised:
 * graphql-js, Apollo Server, graphql-java, graphql-ruby, gqlgen and graphene all omit it on
 * success. A broadcast rule that wants `errors` to equal `[]` (the shipped rules.json's
 * join-class, and the README's advice) never sees a success from such a server: the owning
 * region runs the mutation, yet the client gets another region's "not a class here" error and
 * no pin, and its next request goes to the wrong region.
 */
import assert from "node:assert/strict";
import { type Received, startUpstream, startVestibule } from "./_servers.ts";

const PIN = "__Host-vestibule-region";

/** A spec-conforming GraphQL service for `region`: success has no `errors` entry at all. */
const graphql = (region: string) => (_req: Request, received: Received) => {
  const { variables } = JSON.parse(new TextDecoder().decode(received.body));
  return String(variables?.code).startsWith(region.toUpperCase())
    ? Response.json({ data: { joinClass: { ok: true } } })
    : Response.json({
      data: { joinClass: null },
      errors: [{ message: `Not a class in region ${region}`, path: ["joinClass"] }],
    });
};

Deno.test("false failure: the shipped join-class rule takes a GraphQL success without an errors entry as the owner's", async (t) => {
  const au = startUpstream(graphql("au"));
  const us = startUpstream(graphql("us"));
  const rules = JSON.parse(await Deno.readTextFile(new URL("../rules.json", import.meta.url)));
  const edge = startVestibule(rules, {
    env: {
      AU_ORIGIN: au.url,
      AU_SECRET: "au-secret-for-tests",
      US_ORIGIN: us.url,
      WEBSITE_ORIGIN: us.url,
    },
  });
  const join = (code: string) =>
    fetch(`${edge.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ operationName: "JoinClass", variables: { code } }),
    });
  try {
    await t.step(
      "the owner (not the default region) ran the mutation: its answer and a pin",
      async () => {
        const res = await join("AU-7");
        // Without the fix: us's "Not a class in region us", and no pin.
        assert.deepEqual(await res.json(), { data: { joinClass: { ok: true } } });
        assert.equal(res.status, 200);
        assert.match(res.headers.getSetCookie().join("\n"), new RegExp(`^${PIN}=au;`, "m"));
      },
    );
    await t.step("an answer that carries errors is still no success", async () => {
      const res = await join("NZ-1");
      const body = await res.json();
      assert.equal(body.errors.length, 1);
      assert.equal(res.headers.getSetCookie().length, 0, "no pin on a failure");
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
