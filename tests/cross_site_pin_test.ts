/**
 * Cross-site POST logins (SAML POST binding, Sign in with Apple's form_post, an LTI launch): the
 * identity provider's page posts the browser to the app. Browsers send a `SameSite=Lax` cookie on
 * a cross-site top-level navigation only when its method is safe (RFC 6265bis §5.8.3.1), so a pin
 * that is `Lax` is left behind on such a POST and the request goes to the geo-assumed region.
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

/**
 * The `Cookie` header a browser sends on a cross-site top-level POST with these cookies stored:
 * only `SameSite=None` (and `Secure`) cookies; `Lax`, `Strict` and, in Chrome, unlabelled ones stay.
 */
function crossSitePostCookies(setCookies: string[]): string {
  return setCookies.flatMap((line) => {
    const [pair, ...attributes] = line.split(";").map((part) => part.trim());
    const flags = attributes.map((a) => a.toLowerCase());
    return flags.includes("samesite=none") && flags.includes("secure") ? [pair] : [];
  }).join("; ");
}

Deno.test("pin lost cross-site: a pinned browser's SAML POST from the identity provider reaches its region, not the assumed one", async () => {
  // The app did its part: its session cookie is SameSite=None so that the IdP's POST carries it.
  const region = (id: string, owns: boolean) =>
    startUpstream((req) => {
      const path = new URL(req.url).pathname;
      if (path === "/accounts/login/" && owns) {
        return new Response(null, {
          status: 302,
          headers: {
            location: "/",
            "set-cookie": `sessionid=${id}-s; Path=/; Secure; HttpOnly; SameSite=None`,
          },
        });
      }
      if (path === "/accounts/login/") return new Response("<form>No such user</form>");
      return Response.json({ region: id, cookie: req.headers.get("cookie") });
    });
  const au = region("au", true);
  const us = region("us", false);
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { AU: "au" } },
    pin: { same_site: "none" },
    rules: [
      {
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/accounts/login/$" },
        success: { status: [302], set_cookie: "sessionid" },
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    // An Australian user logs in at home: pinned to au.
    const login = await fetch(`${edge.url}/accounts/login/`, {
      method: "POST",
      redirect: "manual",
      headers: { "cf-ipcountry": "AU", "content-type": "application/x-www-form-urlencoded" },
      body: "username=olivia&password=k",
    });
    await login.body?.cancel();
    assert.equal(login.status, 302);
    // Travelling in the US, the IdP posts the browser to the app's SAML endpoint.
    const acs = await fetch(`${edge.url}/saml/acs/`, {
      method: "POST",
      headers: {
        "cf-ipcountry": "US",
        origin: "https://idp.example.org",
        "content-type": "application/x-www-form-urlencoded",
        cookie: crossSitePostCookies(login.headers.getSetCookie()),
      },
      body: "SAMLResponse=PHNhbWxwOlJlc3BvbnNlLz4%3D&RelayState=%2F",
    });
    const got = await acs.json();
    assert.deepEqual(got, { region: "au", cookie: "sessionid=au-s" });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
