/**
 * Broadcast and pinning behaviour the rest of the suite let change unseen (each test fails on a
 * one-line mutant that passed every other test): Vary on a chosen
 * success, the last SameSite, a quote no piece closes, a Set-Cookie name behind an NBSP, a
 * one-letter name hidden after a space, a cookie Domain beside a Host with a port, and a cookie's
 * default path read from a query holding a `/`.
 */
import assert from "node:assert/strict";
import {
  rawRequest,
  startUpstream,
  startVestibule,
  type TestServer,
  twoRegions,
} from "./_servers.ts";

const PIN = "__Host-vestibule-region";

/** A broadcast login judged by status 302 and a `sessionid` cookie, over au (the default) and us. */
function loginRules(au: TestServer, us: TestServer) {
  return {
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "au",
    rules: [{
      name: "login",
      type: "broadcast",
      match: { methods: ["POST"], path: "^/accounts/login/$" },
      success: { status: [302], set_cookie: "sessionid" },
    }],
  };
}

/** A region that knows no such user: the login form again. */
const noSuchUser = () => startUpstream(() => new Response("no such user", { status: 200 }));

/** A region whose login succeeds with these `Set-Cookie` lines. */
const loggedIn = (setCookies: string[]) =>
  startUpstream(() =>
    new Response(null, {
      status: 302,
      headers: [["location", "/"], ...setCookies.map((c): [string, string] => ["set-cookie", c])],
    })
  );

/**
 * POSTs a login to a broadcast rule judged by status 302 and a `sessionid` cookie, over `au` and
 * `us` (the default region being au), and asserts the client got us's 302 and the us pin.
 */
async function assertOwnerLogin(au: TestServer, us: TestServer, message: string) {
  const edge = startVestibule(loginRules(au, us));
  try {
    const res = await fetch(`${edge.url}/accounts/login/`, {
      method: "POST",
      redirect: "manual",
      body: "username=kim&password=secret",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    await res.body?.cancel();
    assert.equal(res.status, 302, message);
    assert.match(res.headers.getSetCookie().at(-1)!, new RegExp(`^${PIN}=us;`));
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
}

Deno.test("cache poisoning: a broadcast GET's cacheable success, chosen among several by the pin or country, names the region's headers in Vary", async () => {
  // With allow_multiple_success the winner depends on the pin/assumed region, so a shared cache
  // must key it by them, exactly as it does the failure branch.
  const page = (region: string) => () =>
    new Response(`welcome (region ${region})`, {
      status: 200,
      headers: { "cache-control": "public, max-age=300" },
    });
  const au = startUpstream(page("au"));
  const us = startUpstream(page("us"));
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    geo: { header: "cf-ipcountry", countries: { AU: "au" } },
    rules: [{
      name: "landing",
      type: "broadcast",
      match: { methods: ["GET"], path: "^/landing$" },
      success: { status: [200] },
      allow_multiple_success: true,
    }],
  });
  try {
    const response = await fetch(`${edge.url}/landing`, { headers: { "cf-ipcountry": "AU" } });
    assert.equal(await response.text(), "welcome (region au)");
    assert.match(response.headers.getSetCookie().join("\n"), new RegExp(`${PIN}=au`));
    assert.equal(response.headers.get("vary"), "x-vestibule-region, cookie, cf-ipcountry");
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("false failure: a login whose Set-Cookie says SameSite=None then SameSite=Lax (last wins, Chrome keeps it) pins the owner", async () => {
  // Without Secure, only the last SameSite counts: Lax, which every browser stores.
  const au = startUpstream(() => new Response("<form>No such user</form>", { status: 200 }));
  const us = startUpstream(() =>
    new Response(null, {
      status: 302,
      headers: {
        location: "/",
        "set-cookie": "sessionid=abc; Path=/; HttpOnly; SameSite=None; SameSite=Lax",
      },
    })
  );
  await assertOwnerLogin(au, us, "the owner's login, not au's form");
});

Deno.test("pin leak: a pair that opens a quote no `;` piece closes is dropped, or Python reads a later quoted pin as its own", async () => {
  // SimpleCookie reads a="x; z=" as one quoted value, then the pin the next piece quoted away.
  const cookie = 'a="x; z=" __Host-vestibule-region=au "';
  const au = startUpstream();
  const us = startUpstream();
  const edge = startVestibule(twoRegions(au.url, us.url));
  try {
    const res = await fetch(`${edge.url}/whoami`, {
      headers: { cookie: `${cookie}; __Host-vestibule-region=au` },
    });
    await res.body?.cancel();
    assert.equal(au.received.length, 1, "pinned to au");
    const got = au.received[0].headers.get("cookie") ?? "";
    assert.ok(!got.startsWith('a="x'), `forwarded ${JSON.stringify(got)}`);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("false login: a Set-Cookie named `<NBSP>sessionid` is another cookie to the browser, so only the real owner's login counts", async () => {
  // Browsers trim only SP and HTAB around a cookie name (RFC 6265bis §5.7): `\xa0sessionid` is
  // stored under that name, and the app never sees a `sessionid` from it.
  const au = startUpstream(() => {
    const headers = new Headers({ location: "/" });
    headers.append("set-cookie", "\xa0sessionid=zzz; Path=/");
    return new Response(null, { status: 302, headers });
  });
  const us = startUpstream(() =>
    new Response(null, {
      status: 302,
      headers: { location: "/", "set-cookie": "sessionid=abc; Path=/; HttpOnly" },
    })
  );
  await assertOwnerLogin(au, us, "us's login, not 502 broadcast_ambiguous");
});

Deno.test("cookie smuggling: a one-letter cookie name hidden after a space in a whitelisted pair is not forwarded", async () => {
  const { filterCookieHeader } = await import("../lib/cookies.ts");
  // Python's SimpleCookie reads `csrftoken=t s=stolen` as two cookies; `s` is not whitelisted.
  assert.equal(filterCookieHeader("csrftoken=t s=stolen", (n) => n === "csrftoken"), undefined);
});

Deno.test("false failure: a login cookie with Domain=<public host> counts when the Host carries a port", async () => {
  const au = noSuchUser();
  const us = loggedIn(["sessionid=abc; Domain=app.example; Path=/; HttpOnly"]);
  const edge = startVestibule(loginRules(au, us));
  try {
    // The cookie's scope is the host without its port (the dev stack's :8000, a staging port).
    const body = "username=kim&password=secret";
    const answer = await rawRequest(
      edge.port,
      `POST /accounts/login/ HTTP/1.1\r\nHost: app.example:8443\r\nConnection: close\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n` +
        body,
    );
    assert.match(answer, /^HTTP\/1\.1 302/, answer.slice(0, 200));
    assert.match(answer, new RegExp(`\r\nset-cookie: ${PIN}=us;`, "i"));
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("false login: a session cookie the same answer clears at its default path is no login, with a '/' in the query", async () => {
  const au = noSuchUser();
  // No Path: its default path, from /accounts/login/, is /accounts/login, which the second clears.
  const us = loggedIn(["sessionid=abc; HttpOnly", "sessionid=; Max-Age=0; Path=/accounts/login"]);
  const edge = startVestibule(loginRules(au, us));
  try {
    const res = await fetch(`${edge.url}/accounts/login/?next=/dashboard/`, {
      method: "POST",
      redirect: "manual",
      body: "username=kim&password=secret",
    });
    await res.body?.cancel();
    // No region logged in: au's form (the default region's), and no pin.
    assert.deepEqual([res.status, res.headers.getSetCookie()], [200, []]);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
