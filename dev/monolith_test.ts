/** @module Tests for the dev stand-in monolith and website, with real fetches over loopback. */
import assert from "node:assert/strict";
import { startMonolith } from "./monolith.ts";
import { startWebsite } from "./website.ts";

const USERS = { alice: { password: "wonderland", name: "Alice Liddell" } };

function form(fields: Record<string, string>): RequestInit {
  return { method: "POST", body: new URLSearchParams(fields), redirect: "manual" };
}

function graphql(operationName: string, variables: Record<string, unknown>): RequestInit {
  return {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ operationName, variables }),
  };
}

/** Logs alice in and returns the `name=value` pair of the session cookie. */
async function logIn(url: string): Promise<string> {
  const response = await fetch(
    `${url}/accounts/login/`,
    form({ username: "alice", password: "wonderland" }),
  );
  await response.body?.cancel();
  const setCookie = response.headers.get("set-cookie") ?? "";
  return setCookie.split(";")[0];
}

Deno.test("startMonolith() serves a home page that names its region", async (t) => {
  const monolith = startMonolith({ region: "au", users: USERS });
  try {
    await t.step("listens on loopback", () => {
      assert.match(monolith.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    });
    await t.step("says who served it and that nobody is logged in", async () => {
      const response = await fetch(`${monolith.url}/`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
      const body = await response.text();
      assert.match(body, /Served by region AU/);
      assert.match(body, /Not logged in/);
      for (const link of ["/accounts/login/", "/about", "/graphql"]) {
        assert.ok(body.includes(`href="${link}"`), `missing link to ${link}`);
      }
    });
    await t.step("lists received cookies by name, never by value", async () => {
      const response = await fetch(`${monolith.url}/`, {
        headers: { cookie: "vestibule_pin=secret-pin-value; csrftoken=abc" },
      });
      const body = await response.text();
      assert.match(body, /<code>vestibule_pin<\/code>/);
      assert.match(body, /<code>csrftoken<\/code>/);
      assert.ok(!body.includes("secret-pin-value"));
    });
    await t.step("escapes cookie names it shows", async () => {
      const response = await fetch(`${monolith.url}/`, { headers: { cookie: "<b>x=1" } });
      const body = await response.text();
      assert.ok(!body.includes("<b>x"));
      assert.match(body, /<code>&lt;b&gt;x<\/code>/);
    });
  } finally {
    await monolith.close();
  }
});

Deno.test("startMonolith() logs users in and out with a session cookie", async (t) => {
  const monolith = startMonolith({ region: "us", users: USERS });
  try {
    await t.step("serves the login form", async () => {
      const response = await fetch(`${monolith.url}/accounts/login/`);
      const body = await response.text();
      assert.equal(response.status, 200);
      assert.match(body, /<form method="post" action="\/accounts\/login\/">/);
      assert.match(body, /name="username"/);
      assert.match(body, /name="password"/);
    });
    await t.step(
      "redirects to / with an HttpOnly Lax session cookie on the right password",
      async () => {
        const response = await fetch(
          `${monolith.url}/accounts/login/`,
          form({ username: "alice", password: "wonderland" }),
        );
        await response.body?.cancel();
        assert.equal(response.status, 302);
        assert.equal(response.headers.get("location"), "/");
        const setCookie = response.headers.get("set-cookie") ?? "";
        assert.match(setCookie, /^sessionid=[0-9a-f]{32}; Path=\/; HttpOnly; SameSite=Lax$/);
      },
    );
    await t.step("answers 401 with the form and the message on a wrong password", async () => {
      const response = await fetch(
        `${monolith.url}/accounts/login/`,
        form({ username: "alice", password: "nope" }),
      );
      const body = await response.text();
      assert.equal(response.status, 401);
      assert.equal(response.headers.get("set-cookie"), null);
      assert.match(body, /Wrong password/);
      assert.match(body, /name="password"/);
    });
    await t.step("names its region for an unknown user", async () => {
      const response = await fetch(
        `${monolith.url}/accounts/login/`,
        form({ username: "bob", password: "x" }),
      );
      const body = await response.text();
      assert.equal(response.status, 200);
      assert.match(body, /No such user in region US/);
    });
    await t.step("shows the logged-in user on the home page", async () => {
      const cookie = await logIn(monolith.url);
      const body = await (await fetch(`${monolith.url}/`, { headers: { cookie } })).text();
      assert.match(body, /Logged in as <b>Alice Liddell<\/b> \(alice\)/);
      assert.match(body, /<code>sessionid<\/code>/);
    });
    await t.step("forgets the session on logout", async () => {
      const cookie = await logIn(monolith.url);
      const logout = await fetch(`${monolith.url}/accounts/logout/`, {
        method: "POST",
        headers: { cookie },
        redirect: "manual",
      });
      await logout.body?.cancel();
      assert.equal(logout.status, 302);
      assert.equal(logout.headers.get("location"), "/");
      assert.match(logout.headers.get("set-cookie") ?? "", /^sessionid=; Max-Age=0; Path=\//);
      const whoami = await (await fetch(`${monolith.url}/api/whoami`, { headers: { cookie } }))
        .json();
      assert.equal(whoami.user, null);
    });
  } finally {
    await monolith.close();
  }
});

Deno.test("startMonolith() answers /api/whoami with cookie names only", async () => {
  const monolith = startMonolith({ region: "au", users: USERS });
  try {
    const session = await logIn(monolith.url);
    const response = await fetch(`${monolith.url}/api/whoami`, {
      headers: { cookie: `${session}; vestibule_pin=au.signed-value` },
    });
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.deepEqual(JSON.parse(text), {
      region: "au",
      user: "alice",
      received_cookies: ["sessionid", "vestibule_pin"],
    });
    assert.ok(!text.includes("signed-value"));
  } finally {
    await monolith.close();
  }
});

Deno.test("startMonolith() runs the Signup and JoinClass GraphQL operations", async (t) => {
  const taken = new Set<string>();
  const au = startMonolith({ region: "au", users: USERS, takenUsernames: taken });
  const us = startMonolith({ region: "us", users: {}, takenUsernames: taken });
  try {
    await t.step("signs a new user up in this region only", async () => {
      const response = await fetch(
        `${us.url}/graphql`,
        graphql("Signup", { username: "carol", password: "pw", classCode: "US-1" }),
      );
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { data: { signup: { ok: true } } });
      const login = await fetch(
        `${us.url}/accounts/login/`,
        form({ username: "carol", password: "pw" }),
      );
      await login.body?.cancel();
      assert.equal(login.status, 302);
      const elsewhere = await fetch(
        `${au.url}/accounts/login/`,
        form({ username: "carol", password: "pw" }),
      );
      assert.match(await elsewhere.text(), /No such user in region AU/);
    });
    await t.step("refuses a username this region has", async () => {
      const response = await fetch(
        `${au.url}/graphql`,
        graphql("Signup", { username: "alice", password: "x", classCode: "AU-1" }),
      );
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.deepEqual(
        body.data,
        { signup: { ok: false } },
        "what the edge's prefer_failure picks",
      );
      assert.equal(body.errors.length, 1);
      assert.equal(body.errors[0].message, 'Cannot sign up "alice": username is taken');
    });
    await t.step("refuses a username another region took when they share a set", async () => {
      const response = await fetch(
        `${au.url}/graphql`,
        graphql("Signup", { username: "carol", password: "x", classCode: "AU-1" }),
      );
      const body = await response.json();
      assert.deepEqual(body.data, { signup: { ok: false } });
      assert.match(body.errors[0].message, /"carol": username is taken/);
    });
    await t.step("refuses a signup into a class of another region", async () => {
      const response = await fetch(
        `${au.url}/graphql`,
        graphql("Signup", { username: "zoe", password: "x", classCode: "US-1" }),
      );
      const body = await response.json();
      assert.equal(body.data, null);
      assert.equal(body.errors[0].message, 'Cannot sign up: class "US-1" is not in region AU');
    });
    await t.step("refuses a signup without the variables", async () => {
      const response = await fetch(`${au.url}/graphql`, graphql("Signup", { username: "dan" }));
      const body = await response.json();
      assert.equal(body.data, null);
      assert.ok(body.errors.length > 0);
    });
    await t.step("joins a class whose code starts with the region", async () => {
      const response = await fetch(`${au.url}/graphql`, graphql("JoinClass", { code: "AU-123" }));
      assert.deepEqual(await response.json(), { data: { joinClass: { ok: true } } });
    });
    await t.step("refuses a class of another region", async () => {
      const response = await fetch(`${au.url}/graphql`, graphql("JoinClass", { code: "US-123" }));
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.equal(body.data, null);
      assert.equal(body.errors[0].message, 'Cannot join class "US-123": not a class in region AU');
    });
    await t.step("names an unknown operation", async () => {
      const response = await fetch(`${au.url}/graphql`, graphql("Nope", {}));
      const body = await response.json();
      assert.deepEqual(body.errors, [{ message: 'Unknown operation "Nope"' }]);
    });
    await t.step("answers 400 to a body that is not JSON", async () => {
      const response = await fetch(`${au.url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{",
      });
      assert.equal(response.status, 400);
      const body = await response.json();
      assert.equal(body.data, null);
      assert.match(body.errors[0].message, /^Cannot parse request body as JSON: /);
    });
    await t.step("serves a demo page for the operations", async () => {
      const response = await fetch(`${au.url}/graphql`);
      const body = await response.text();
      assert.equal(response.status, 200);
      assert.match(body, /GraphQL demo · region AU/);
      assert.match(body, /send\("Signup"/);
    });
  } finally {
    await au.close();
    await us.close();
  }
});

Deno.test("startMonolith() switch-region CSRF: only a link signed by a staff page switches", async (t) => {
  const secret = "test-switch-secret";
  const regions = ["au", "us"];
  const users = { ...USERS, alice: { ...USERS.alice, staff: true } };
  const us = startMonolith({ region: "us", users, switchSecret: secret, regions });
  const au = startMonolith({ region: "au", users: {}, switchSecret: secret, regions });
  const other = startMonolith({ region: "au", users: {}, switchSecret: "another", regions });
  const switchTo = async (url: string, region: string, token?: string) => {
    const response = await fetch(
      `${url}/staff/switch-region/${region}`,
      form(token === undefined ? {} : { token }),
    );
    await response.body?.cancel();
    return response;
  };
  try {
    const session = await logIn(us.url);
    const home = await (await fetch(`${us.url}/`, { headers: { cookie: session } })).text();
    const token = home.match(/name="token" value="([^"]+)"/)?.[1];
    assert.ok(token, "a staff user's home page carries a signed switch link");
    assert.match(home, /action="\/staff\/switch-region\/au"/);

    await t.step("the signed link switches to the region it names", async () => {
      const response = await switchTo(au.url, "au", token);
      assert.equal(response.status, 302);
      assert.equal(response.headers.get("location"), "/");
    });
    await t.step("a cross-site form without a token is refused", async () => {
      assert.equal((await switchTo(au.url, "au")).status, 403);
    });
    await t.step("a tampered, re-targeted or foreign-signed link is refused", async () => {
      const [region, expires, signature] = token.split(".");
      const flipped = (signature[0] === "0" ? "1" : "0") + signature.slice(1);
      assert.equal((await switchTo(au.url, "au", `${region}.${expires}.${flipped}`)).status, 403);
      assert.equal(
        (await switchTo(au.url, "au", `${region}.${+expires + 1}.${signature}`)).status,
        403,
      );
      assert.equal((await switchTo(us.url, "us", token)).status, 403, "signed for au, not us");
      assert.equal((await switchTo(other.url, "au", token)).status, 403, "another secret");
      assert.equal((await switchTo(au.url, "au", "au.9999999999.zz")).status, 403);
    });
    await t.step("an expired link is refused", async () => {
      const key = await crypto.subtle.importKey(
        "raw",
        new TextEncoder().encode(secret),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["sign"],
      );
      const expires = Math.floor(Date.now() / 1000) - 1;
      const signed = await crypto.subtle.sign(
        "HMAC",
        key,
        new TextEncoder().encode(`au.${expires}`),
      );
      const hex = Array.from(new Uint8Array(signed), (b) => b.toString(16).padStart(2, "0")).join(
        "",
      );
      assert.equal((await switchTo(au.url, "au", `au.${expires}.${hex}`)).status, 403);
    });
    await t.step("a user who is not staff gets no switch link", async () => {
      const plain = startMonolith({ region: "us", users: USERS, switchSecret: secret, regions });
      try {
        const cookie = await logIn(plain.url);
        const page = await (await fetch(`${plain.url}/`, { headers: { cookie } })).text();
        assert.doesNotMatch(page, /switch-region/);
      } finally {
        await plain.close();
      }
    });
  } finally {
    await Promise.all([us.close(), au.close(), other.close()]);
  }
});

Deno.test("startMonolith() copies its users instead of adding signups to the caller's object", async () => {
  const users = { alice: USERS.alice };
  const monolith = startMonolith({ region: "au", users });
  try {
    const response = await fetch(
      `${monolith.url}/graphql`,
      graphql("Signup", { username: "erin", password: "pw", classCode: "AU-9" }),
    );
    await response.body?.cancel();
    assert.deepEqual(Object.keys(users), ["alice"]);
  } finally {
    await monolith.close();
  }
});

Deno.test("startWebsite() serves /about and /pricing as the global website", async (t) => {
  const website = startWebsite();
  try {
    for (const path of ["/about", "/pricing"]) {
      await t.step(`serves ${path}`, async () => {
        const response = await fetch(`${website.url}${path}`, {
          headers: { cookie: "sessionid=s3cret" },
        });
        const body = await response.text();
        assert.equal(response.status, 200);
        assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
        assert.match(body, /Served by the global website/);
        assert.match(body, /Cookies received \(names only\): sessionid/);
        assert.ok(!body.includes("s3cret"));
      });
    }
    await t.step("answers 404 elsewhere", async () => {
      const response = await fetch(`${website.url}/accounts/login/`);
      await response.body?.cancel();
      assert.equal(response.status, 404);
    });
  } finally {
    await website.close();
  }
});

Deno.test("startMonolith() JoinClass reads a class code in any letter case, as Signup does", async (t) => {
  // The demo page offers "AU-1"; a visitor who types "au-1" signed up fine but could not join:
  // every region refused, so the broadcast found no owner and pinned nobody.
  const au = startMonolith({ region: "au", users: {} });
  const us = startMonolith({ region: "us", users: {} });
  try {
    await t.step("Signup takes au-1 in AU", async () => {
      const response = await fetch(
        `${au.url}/graphql`,
        graphql("Signup", { username: "kim", password: "pw", classCode: "au-1" }),
      );
      assert.deepEqual(await response.json(), { data: { signup: { ok: true } } });
    });
    await t.step("JoinClass takes au-1 in AU", async () => {
      const response = await fetch(`${au.url}/graphql`, graphql("JoinClass", { code: "au-1" }));
      assert.deepEqual(await response.json(), { data: { joinClass: { ok: true } } });
    });
    await t.step("and US still refuses it, so the broadcast has one owner", async () => {
      const response = await fetch(`${us.url}/graphql`, graphql("JoinClass", { code: "au-1" }));
      const body = await response.json();
      assert.equal(body.data, null);
      assert.equal(body.errors[0].message, 'Cannot join class "au-1": not a class in region US');
    });
  } finally {
    await au.close();
    await us.close();
  }
});

Deno.test("startMonolith() Signup: a username another region starts with is taken, so no one has two accounts", async () => {
  // As `deno task dev` builds them: one shared set, AU then US. A "james" signed up in AU as
  // well made the broadcast login find two owners.
  const taken = new Set<string>();
  const au = startMonolith({ region: "au", users: {}, takenUsernames: taken });
  const us = startMonolith({
    region: "us",
    users: { james: { password: "eagle", name: "James" } },
    takenUsernames: taken,
  });
  try {
    const response = await fetch(
      `${au.url}/graphql`,
      graphql("Signup", { username: "james", password: "eagle", classCode: "AU-1" }),
    );
    const body = await response.json();
    assert.deepEqual(body.data, { signup: { ok: false } });
    assert.equal(body.errors[0].message, 'Cannot sign up "james": username is taken');
  } finally {
    await au.close();
    await us.close();
  }
});

Deno.test("startMonolith() Signup refuses an empty username, which the login form could then log in as", async () => {
  const au = startMonolith({ region: "au", users: {} });
  try {
    const response = await fetch(
      `${au.url}/graphql`,
      graphql("Signup", { username: "", password: "pw", classCode: "AU-1" }),
    );
    const body = await response.json();
    assert.equal(body.data, null);
    assert.match(body.errors[0].message, /^Signup needs string variables/);
  } finally {
    await au.close();
  }
});

Deno.test("startMonolith() JoinClass without a code is a GraphQL error, not a 500", async () => {
  const au = startMonolith({ region: "au", users: {} });
  try {
    const response = await fetch(`${au.url}/graphql`, graphql("JoinClass", {}));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      data: null,
      errors: [{ message: 'Cannot join class "undefined": not a class in region AU' }],
    });
  } finally {
    await au.close();
  }
});

Deno.test("startMonolith() staff page offers a switch to each other region only, not to its own, signed for five minutes", async () => {
  const us = startMonolith({
    region: "us",
    users: { sam: { password: "staff", name: "Sam", staff: true } },
    switchSecret: "s",
    regions: ["au", "us"],
  });
  try {
    const login = await fetch(`${us.url}/accounts/login/`, {
      method: "POST",
      body: new URLSearchParams({ username: "sam", password: "staff" }),
      redirect: "manual",
    });
    await login.body?.cancel();
    const cookie = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
    const home = await (await fetch(`${us.url}/`, { headers: { cookie } })).text();
    assert.deepEqual(
      [...home.matchAll(/action="\/staff\/switch-region\/([a-z]+)"/g)].map((m) => m[1]),
      ["au"],
    );
    assert.doesNotMatch(home, /Switch to region US/);
    // Signed for five minutes, as README says.
    const expires = Number(/name="token" value="au\.(\d+)\./.exec(home)?.[1]);
    const left = expires - Date.now() / 1000;
    assert.ok(left > 290 && left <= 300, `the link expires in ${left} s`);
  } finally {
    await us.close();
  }
});

Deno.test('startWebsite() says "none" when a visitor sent no cookies', async () => {
  const website = startWebsite();
  try {
    const body = await (await fetch(`${website.url}/about`)).text();
    assert.match(body, /Cookies received \(names only\): none</);
  } finally {
    await website.close();
  }
});

Deno.test("startMonolith() on an IPv6 hostname (::1) reports a URL fetch can reach", async () => {
  const monolith = startMonolith({ region: "au", users: {}, hostname: "::1" });
  try {
    assert.match(monolith.url, /^http:\/\/\[::1\]:\d+$/);
    const response = await fetch(`${monolith.url}/`);
    assert.match(await response.text(), /Served by region AU/);
  } finally {
    await monolith.close();
  }
});
