/** `deno task dev` end to end: the stack a newcomer clicks through, driven over HTTP. */
import assert from "node:assert/strict";
import { DEAD_ORIGIN, listeningAddresses, LOOPBACK_ONLY } from "./_servers.ts";
import { startDevStack } from "./_dev_stack.ts";

Deno.test("deno task dev: anonymous pages, website, broadcast login and pin, wrong password page", async (t) => {
  // A shell with a deploy's settings exported: the stack must still run its own rules.json
  // (with these passed on, the edge answered 502 for every link of the banner).
  const stack = await startDevStack({
    ...LOOPBACK_ONLY,
    PORT: "0",
    VESTIBULE_RULES: "/dev/null",
    DENO_DEPLOYMENT_ID: "prod",
  });
  try {
    const port = /^ {2}open +http:\/\/localhost:(\d+)\//m.exec(stack.stdout)?.[1];
    assert.ok(port, `the banner, so the stack listens: ${stack.stdout}${stack.stderr}`);
    const base = `http://127.0.0.1:${port}`;
    await t.step("anonymous: the assumed region (US by default), no pin", async () => {
      const res = await fetch(`${base}/`);
      assert.match(await res.text(), /Served by region US/);
      assert.deepEqual(res.headers.getSetCookie(), []);
      const au = await fetch(`${base}/`, { headers: { "cf-ipcountry": "NZ" } });
      assert.match(await au.text(), /Served by region AU/);
    });
    await t.step("the marketing pages come from the website", async () => {
      const res = await fetch(`${base}/about`);
      assert.match(await res.text(), /Served by the global website/);
    });
    await t.step("the banner's metrics command answers with the stack's counts", async () => {
      const res = await fetch(`${base}/_vestibule/metrics`, {
        headers: { authorization: "Bearer dev-only-metrics-token" },
      });
      assert.equal(res.status, 200);
      assert.match(await res.text(), /^# TYPE vestibule_requests_total counter$/m);
    });
    let cookies = "";
    await t.step("logging in as a US user pins the browser to US", async () => {
      const res = await fetch(`${base}/accounts/login/`, {
        method: "POST",
        body: new URLSearchParams({ username: "james", password: "eagle" }),
        redirect: "manual",
      });
      await res.body?.cancel();
      assert.equal(res.status, 302);
      const set = res.headers.getSetCookie();
      assert.match(set.at(-1)!, /^__Host-vestibule-region=us;/);
      cookies = set.map((c) => c.split(";")[0]).join("; ");
    });
    await t.step(
      "the pinned browser reaches US with its session, and US never sees the pin",
      async () => {
        const res = await fetch(`${base}/api/whoami`, {
          headers: { cookie: cookies, "cf-ipcountry": "AU" },
        });
        const who = await res.json();
        assert.equal(who.region, "us");
        assert.ok(who.user, "logged in");
        assert.ok(who.received_cookies.includes("sessionid"));
        assert.ok(!who.received_cookies.some((n: string) => n.includes("vestibule")));
      },
    );
    await t.step(
      "staff: the signed switch button pins to AU; a bare cross-site POST does not",
      async () => {
        const login = await fetch(`${base}/accounts/login/`, {
          method: "POST",
          body: new URLSearchParams({ username: "sam", password: "staff" }),
          redirect: "manual",
        });
        await login.body?.cancel();
        const staff = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
        const home = await (await fetch(`${base}/`, { headers: { cookie: staff } })).text();
        const token = home.match(/name="token" value="([^"]+)"/)?.[1];
        assert.ok(token, "sam's home page has a signed switch link");
        const forged = await fetch(`${base}/staff/switch-region/au`, {
          method: "POST",
          redirect: "manual",
        });
        await forged.body?.cancel();
        assert.equal(forged.status, 403);
        assert.deepEqual(forged.headers.getSetCookie(), [], "no pin for a switch AU refused");
        const signed = await fetch(`${base}/staff/switch-region/au`, {
          method: "POST",
          headers: { cookie: staff },
          body: new URLSearchParams({ token }),
          redirect: "manual",
        });
        await signed.body?.cancel();
        assert.equal(signed.status, 302);
        assert.match(signed.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au;/);
      },
    );
    await t.step("a wrong password shows the owning region's own error page", async () => {
      const res = await fetch(`${base}/accounts/login/`, {
        method: "POST",
        body: new URLSearchParams({ username: "olivia", password: "wrong" }),
      });
      assert.equal(res.status, 401);
      const page = await res.text();
      assert.match(page, /Wrong password/);
      assert.match(page, /region AU/);
    });
    // A student of the AU class AU-7 signs up through the edge, as the demo page does.
    const signUpMia = () =>
      fetch(`${base}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          operationName: "Signup",
          variables: { username: "mia", password: "pw", classCode: "AU-7" },
        }),
      });
    await t.step(
      "a GraphQL signup is broadcast; the class's region creates the account and pins",
      async () => {
        const res = await signUpMia();
        assert.deepEqual(await res.json(), { data: { signup: { ok: true } } });
        assert.match(res.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au;/);
        const login = await fetch(`${base}/accounts/login/`, {
          method: "POST",
          body: new URLSearchParams({ username: "mia", password: "pw" }),
          redirect: "manual",
        });
        await login.body?.cancel();
        assert.match(login.headers.getSetCookie().at(-1)!, /^__Host-vestibule-region=au;/);
      },
    );
    await t.step("a signup with a taken name shows the class's region's error", async () => {
      const res = await signUpMia();
      // Not US's "class is not in region US", which the default region would give.
      assert.deepEqual(await res.json(), {
        data: { signup: { ok: false } },
        errors: [{ message: 'Cannot sign up "mia": username is taken' }],
      });
      assert.deepEqual(res.headers.getSetCookie(), [], "a failed signup pins no region");
    });
  } finally {
    await stack.stop();
  }
});

// The banner is the newcomer's map (README, "Local stack"): every link, login and command it prints
// must lead where it says, and the shell's own vestibule settings must not change the stack.
/** The banner line that starts with `label`, after the label. */
function line(stdout: string, label: string): string {
  const found = new RegExp(`^ {2}${label} +(.*)$`, "m").exec(stdout)?.[1];
  assert.ok(found, `a "${label}" line in the banner: ${stdout}`);
  return found;
}

function firstUrl(text: string): string {
  const url = /http:\/\/\S+/.exec(text)?.[0];
  assert.ok(url, `a URL in ${text}`);
  return url;
}

async function text(url: string, init?: RequestInit): Promise<string> {
  return await (await fetch(url, init)).text();
}

Deno.test("deno task dev: every link, login and command the banner prints leads where it says, behind a proxy too", async (t) => {
  // A shell behind a corporate proxy (how npx got Deno): vestibule's fetch sent every call to the
  // loopback stand-ins to it, a 502 on every page. Nothing listens there.
  const proxy = DEAD_ORIGIN;
  const stack = await startDevStack({
    PORT: "0",
    HTTP_PROXY: proxy,
    https_proxy: proxy,
    ALL_PROXY: proxy,
    NO_PROXY: "",
    // Blank, as a .env template leaves it: the stack's loopback default, not a refusal.
    VESTIBULE_HOST: "",
  });
  const { stdout } = stack;
  try {
    await t.step("vestibule listens on loopback only", async () => {
      const port = Number(/localhost:(\d+)/.exec(line(stdout, "open"))![1]);
      // 0100007F is 127.0.0.1 as the kernel writes it; 00000000 would be every interface.
      assert.deepEqual([...new Set(await listeningAddresses(port))], ["0100007F"]);
    });
    await t.step("open: the assumed region, US", async () => {
      assert.match(await text(firstUrl(line(stdout, "open"))), /Served by region US/);
    });
    await t.step("about: the global website", async () => {
      assert.match(await text(firstUrl(line(stdout, "about"))), /Served by the global website/);
    });
    const logIn = line(stdout, "log in");
    await t.step("log in: the login form", async () => {
      assert.match(await text(firstUrl(logIn)), /Log in to region US/);
    });
    await t.step("log in: each user and password it names pins the region it names", async () => {
      const users = [...logIn.matchAll(/(\w+) \/ (\w+) \((AU|US)\)/g)];
      assert.equal(users.length, 2, logIn);
      for (const [, username, password, region] of users) {
        const response = await fetch(firstUrl(logIn), {
          method: "POST",
          body: new URLSearchParams({ username, password }),
          redirect: "manual",
        });
        await response.body?.cancel();
        assert.equal(response.status, 302, `${username} / ${password}`);
        assert.match(
          response.headers.getSetCookie().at(-1)!,
          new RegExp(`^__Host-vestibule-region=${region.toLowerCase()};`),
          `${username} is a ${region} user`,
        );
      }
    });
    await t.step("staff: the login it names has the signed switch button", async () => {
      const staff = /log in as (\w+) \/ (\w+) \((?:AU|US)\)/.exec(line(stdout, "staff"));
      assert.ok(staff, line(stdout, "staff"));
      const [, username, password] = staff;
      const login = await fetch(firstUrl(logIn), {
        method: "POST",
        body: new URLSearchParams({ username, password }),
        redirect: "manual",
      });
      await login.body?.cancel();
      assert.equal(login.status, 302, `${username} / ${password}`);
      const cookie = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
      const home = firstUrl(line(stdout, "open"));
      assert.match(await text(home, { headers: { cookie } }), /Switch to region AU/);
    });
    await t.step("GraphQL: the demo page", async () => {
      assert.match(await text(firstUrl(line(stdout, "GraphQL"))), /GraphQL demo/);
    });
    await t.step("as AU: the curl command reaches AU", async () => {
      const command = /^curl -H '([^':]+): ([^']*)' (\S+)$/.exec(line(stdout, "as AU"));
      assert.ok(command, "one curl command");
      const [, name, value, url] = command;
      assert.match(await text(url, { headers: { [name]: value } }), /Served by region AU/);
    });
    await t.step("upstreams: each URL is the server it names", async () => {
      const upstreams = line(stdout, "upstreams");
      const [au, us, website] = ["AU", "US", "website"].map((name) =>
        new RegExp(`${name} (http://\\S+)`).exec(upstreams)?.[1]
      );
      assert.ok(au && us && website, upstreams);
      assert.match(await text(`${au}/`), /Served by region AU/);
      assert.match(await text(`${us}/`), /Served by region US/);
      assert.match(await text(`${website}/about`), /Served by the global website/);
    });
  } finally {
    await stack.stop();
  }
});

Deno.test("deno task dev: a shell's VESTIBULE_SHUTDOWN_GRACE_MS, meant for another deploy, does not stop the stack's vestibule", async () => {
  // "30s": fine for the supervisor it was written for, refused by vestibule at start-up. The stack
  // runs vestibule with its own settings, none of the shell's VESTIBULE_*.
  const stack = await startDevStack({ PORT: "0", VESTIBULE_SHUTDOWN_GRACE_MS: "30s" });
  try {
    const open = /^ {2}open +(\S+)/m.exec(stack.stdout)?.[1];
    assert.ok(open, `the banner, so vestibule listens: ${stack.stdout}`);
    assert.match(await text(open), /Served by region US/);
  } finally {
    await stack.stop();
  }
});
