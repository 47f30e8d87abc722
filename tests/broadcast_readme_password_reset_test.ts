/**
 * The README's broadcast examples are what operators copy. Django's PasswordResetView (like
 * Devise in paranoid mode and Laravel Breeze) answers every reset request with the same redirect,
 * whether or not the e-mail is an account of that region, so that nobody can probe for accounts:
 * every region "succeeds", and only the owner sends the mail.
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

/** The README's `password-reset` rule, as written there (a one-rule JSON object). */
async function readmeRule(name: string): Promise<Record<string, unknown>> {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const start = readme.indexOf(`{ "name": "${name}"`);
  assert.notEqual(start, -1, `the README shows a "${name}" rule`);
  let depth = 0;
  for (let i = start; i < readme.length; i++) {
    if (readme[i] === "{") depth++;
    if (readme[i] === "}" && --depth === 0) return JSON.parse(readme.slice(start, i + 1));
  }
  throw new SyntaxError(`Cannot read the README's "${name}" rule`);
}

Deno.test("wrong answer: the README's password-reset rule gives a Django reset its 'check your e-mail' page, not 502 broadcast_ambiguous", async () => {
  const mailed: string[] = [];
  const django = (id: string, accounts: string[]) =>
    startUpstream((_req, received) => {
      const email = new URLSearchParams(new TextDecoder().decode(received.body)).get("email")!;
      if (accounts.includes(email)) mailed.push(`${id}:${email}`);
      // django.contrib.auth.views.PasswordResetView.form_valid: the same redirect either way.
      return new Response(null, {
        status: 302,
        headers: { location: "/accounts/password/reset/done/" },
      });
    });
  const au = django("au", ["olivia@example.com"]);
  const us = django("us", ["james@example.com"]);
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    forward_cookies: ["csrftoken"],
    rules: [await readmeRule("password-reset")],
  });
  try {
    const res = await fetch(`${edge.url}/accounts/password/reset/`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "text/html" },
      body: "email=olivia%40example.com",
    });
    await res.body?.cancel();
    assert.deepEqual(mailed, ["au:olivia@example.com"]);
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "/accounts/password/reset/done/");
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
