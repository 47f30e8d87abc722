/** `deno task dev` end to end: the stack a newcomer clicks through, driven over HTTP. */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function waitFor(url: string, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      await res.body?.cancel();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`The dev stack did not answer at ${url}`);
}

Deno.test("deno task dev: anonymous pages, website, broadcast login and pin, wrong password page", async (t) => {
  const port = freePort();
  const stack = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "dev/stack.ts"],
    cwd: ROOT,
    // A shell with a deploy's settings exported: the stack must still run its own rules.json
    // (with these passed on, the edge answered 502 for every link of the banner).
    env: { PORT: String(port), VESTIBULE_RULES: "/dev/null", DENO_DEPLOYMENT_ID: "prod" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`${base}/_vestibule/health`, Date.now() + 20_000);
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
    stack.kill("SIGTERM");
    await stack.status;
    await stack.stdout.cancel();
    await stack.stderr.cancel();
  }
});
