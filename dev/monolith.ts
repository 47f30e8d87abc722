/** @module A stand-in regional monolith (Django-like pages, sessions and GraphQL) for local development. */
import { Hono } from "hono";
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { html } from "hono/html";
import { type DevServer, page, serve } from "./_html.ts";
export type { DevServer };

/** An account a monolith knows from the start. */
export interface MonolithUser {
  password: string;
  name: string;
  /** Staff see signed links that switch their browser to another region. */
  staff?: boolean;
}

/** What a stand-in monolith plays and where it listens. */
export interface MonolithOptions {
  /** Region id, e.g. `"au"`; pages show it upper-cased. */
  region: string;
  /** Accounts keyed by username; signups add to a copy, never to this object. */
  users: Record<string, MonolithUser>;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Defaults to `127.0.0.1`. */
  hostname?: string;
  /**
   * Usernames taken in any region. Give every monolith the same set to play a global uniqueness
   * check at signup (each adds its users and signups to it); without it a monolith only knows
   * its own users.
   */
  takenUsernames?: Set<string>;
  /**
   * Shared by every monolith: a region's staff page signs switch links with it, and the region
   * switched to checks the signature. Without it every switch is refused.
   */
  switchSecret?: string;
  /** All region ids, for the staff page's switch links; defaults to this region only. */
  regions?: string[];
}

/** How long a signed switch link stays good. */
const SWITCH_LINK_SECONDS = 300;

/** The cookie Django's session middleware uses. */
const SESSION_COOKIE = "sessionid";

/**
 * Starts a monolith for one region on loopback: login, logout and sessions in memory, a home page
 * that names the region, `/api/whoami`, `POST /graphql` (`Signup`, `JoinClass`) and the staff
 * region switch (signed links only). The cookies it receives are shown by name only, never by value.
 */
export function startMonolith(options: MonolithOptions): DevServer {
  const app = createMonolithApp(options);
  return serve(app, options);
}

function createMonolithApp(options: MonolithOptions): Hono {
  const region = options.region.toUpperCase();
  const users = new Map(Object.entries(options.users));
  const taken = options.takenUsernames ?? new Set<string>();
  for (const username of users.keys()) taken.add(username);
  const sessions = new Map<string, string>();

  const currentUser = (c: Context): string | undefined => {
    const sessionId = getCookie(c, SESSION_COOKIE);
    return sessionId === undefined ? undefined : sessions.get(sessionId);
  };
  const cookieNames = (c: Context): string[] => Object.keys(getCookie(c));
  const switchKey = options.switchSecret === undefined ? undefined : crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(options.switchSecret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );

  const app = new Hono();

  app.get("/", async (c) => {
    const username = currentUser(c);
    const user = username === undefined ? undefined : users.get(username);
    const who = user
      ? html`
        <p>Logged in as <b>${user.name}</b> (${username}).</p>
        <form method="post" action="/accounts/logout/"><button>Log out</button></form>
        ${user.staff && switchKey ? await switchForms(await switchKey) : ""}
      `
      : html`<p>Not logged in. <a href="/accounts/login/">Log in</a></p>`;
    return c.html(page(
      `Home · ${region}`,
      html`
        <h1>Served by region ${region}</h1>
                ${who}
                <ul>
          <li><a href="/accounts/login/">/accounts/login/</a></li>
          <li><a href="/about">/about</a> (the global website)</li>
          <li><a href="/graphql">/graphql demo</a></li>
          <li><a href="/api/whoami">/api/whoami</a></li>
        </ul>
                ${cookieList(cookieNames(c))}
      `,
    ));
  });

  app.get("/accounts/login/", (c) => c.html(loginPage(region)));

  app.post("/accounts/login/", async (c) => {
    const form = await c.req.parseBody();
    const username = typeof form.username === "string" ? form.username : "";
    const password = typeof form.password === "string" ? form.password : "";
    const user = users.get(username);
    if (user === undefined) {
      return c.html(loginPage(region, `No such user in region ${region}`, username));
    }
    // 401, not 200: the broadcast login rule prefers this failure (`prefer_failure`), so a user
    // who mistypes sees the error page of the region that owns them.
    if (user.password !== password) {
      return c.html(loginPage(region, "Wrong password", username), 401);
    }
    const sessionId = randomToken();
    sessions.set(sessionId, username);
    setCookie(c, SESSION_COOKIE, sessionId, { path: "/", httpOnly: true, sameSite: "Lax" });
    return c.redirect("/", 302);
  });

  app.post("/accounts/logout/", (c) => {
    const sessionId = getCookie(c, SESSION_COOKIE);
    if (sessionId !== undefined) sessions.delete(sessionId);
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.redirect("/", 302);
  });

  app.get(
    "/api/whoami",
    (c) =>
      c.json({
        region: options.region,
        user: currentUser(c) ?? null,
        received_cookies: cookieNames(c),
      }),
  );

  app.get("/graphql", (c) => c.html(graphqlDemoPage(region)));

  app.post("/graphql", async (c) => {
    let request: unknown;
    try {
      request = await c.req.json();
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      return c.json(failure(`Cannot parse request body as JSON: ${detail}`), 400);
    }
    const { operationName, variables } = asRecord(request);
    const vars = asRecord(variables);
    switch (operationName) {
      case "Signup": {
        // A student signs up with their teacher's class code; the region that owns the class
        // owns the new account, so a broadcast signup has exactly one success.
        const { username, password, classCode } = vars;
        if (
          typeof username !== "string" || username === "" || typeof password !== "string" ||
          typeof classCode !== "string"
        ) {
          return c.json(
            failure('Signup needs string variables "username", "password" and "classCode"'),
          );
        }
        if (!classCode.toUpperCase().startsWith(region)) {
          return c.json(failure(`Cannot sign up: class "${classCode}" is not in region ${region}`));
        }
        if (taken.has(username) || users.has(username)) {
          // The class's region answers `ok: false`, the others no `signup` at all: the edge's
          // `prefer_failure` shows this message rather than another region's "not in region".
          return c.json({
            data: { signup: { ok: false } },
            errors: [{ message: `Cannot sign up "${username}": username is taken` }],
          });
        }
        users.set(username, { password, name: username });
        taken.add(username);
        return c.json({ data: { signup: { ok: true } } });
      }
      case "JoinClass": {
        const { code } = vars;
        if (typeof code !== "string" || !code.toUpperCase().startsWith(region)) {
          return c.json(
            failure(`Cannot join class "${String(code)}": not a class in region ${region}`),
          );
        }
        return c.json({ data: { joinClass: { ok: true } } });
      }
      default:
        return c.json(failure(`Unknown operation "${String(operationName)}"`));
    }
  });

  // The edge pins the browser on any 3xx here (`pin_on`), so this answer is the whole
  // authorization: only a link signed by some region's staff page, for this region, still fresh.
  app.post("/staff/switch-region/:region", async (c) => {
    const form = await c.req.parseBody();
    const token = typeof form.token === "string" ? form.token : "";
    const [target, expires, signature] = token.split(".");
    const fresh = Number(expires) > Date.now() / 1000;
    const valid = switchKey !== undefined && target === options.region &&
      c.req.param("region") === options.region && fresh && signature !== undefined &&
      await crypto.subtle.verify(
        "HMAC",
        await switchKey,
        fromHex(signature),
        new TextEncoder().encode(`${target}.${expires}`),
      );
    if (!valid) {
      return c.html(page("Switch refused", html`<h1>This switch link is not valid</h1>`), 403);
    }
    return c.redirect("/", 302);
  });

  /** Forms that switch a staff browser to each other region, with links signed for 5 minutes. */
  async function switchForms(key: CryptoKey) {
    const expires = Math.floor(Date.now() / 1000) + SWITCH_LINK_SECONDS;
    const others = (options.regions ?? []).filter((id) => id !== options.region);
    const forms = await Promise.all(others.map(async (id) => {
      const signed = new TextEncoder().encode(`${id}.${expires}`);
      const signature = toHex(await crypto.subtle.sign("HMAC", key, signed));
      return html`
        <form method="post" action="/staff/switch-region/${id}">
          <input type="hidden" name="token" value="${id}.${expires}.${signature}">
          <button>Switch to region ${id.toUpperCase()}</button>
        </form>
      `;
    }));
    return html`<h2>Staff</h2>${forms}`;
  }

  return app;
}

function failure(message: string): { data: null; errors: { message: string }[] } {
  return { data: null, errors: [{ message }] };
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? value as Record<string, unknown> : {};
}

function randomToken(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)).buffer);
}

function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  const pairs = /^(?:[0-9a-f]{2})+$/.test(hex) ? hex.match(/../g)! : [];
  return new Uint8Array(pairs.map((pair) => parseInt(pair, 16)));
}

function loginPage(region: string, error?: string, username = "") {
  return page(
    `Log in · ${region}`,
    html`
      <h1>Log in to region ${region}</h1>
            ${error === undefined ? "" : html`<p class="error">${error}</p>`}
            <form method="post" action="/accounts/login/">
        <label>Username <input name="username" value="${username}" autofocus></label>
        <label>Password <input name="password" type="password"></label>
        <button>Log in</button>
      </form>
            <p><a href="/">Home</a></p>
    `,
  );
}

function graphqlDemoPage(region: string) {
  // Inline script only: the demo must work with no external assets.
  return page(
    `GraphQL · ${region}`,
    html`
      <h1>GraphQL demo · region ${region}</h1>
      <form id="signup">
        <h2>Signup</h2>
        <label>Username <input name="username"></label>
        <label>Password <input name="password" type="password"></label>
        <label>Class code <input name="classCode" placeholder="AU-1 or US-1"></label>
        <button>Sign up</button>
      </form>
      <form id="join">
        <h2>JoinClass</h2>
        <label>Class code <input name="code" placeholder="${region}-123"></label>
        <button>Join</button>
      </form>
      <pre id="result">Results appear here.</pre>
      <p><a href="/">Home</a></p>
      <script>
              const send = async (operationName, variables) => {
                const response = await fetch("/graphql", {
                  method: "POST",
                  headers: { "content-type": "application/json" },
                  body: JSON.stringify({ operationName, variables }),
                });
                document.getElementById("result").textContent =
                  response.status + "\\n" + JSON.stringify(await response.json(), null, 2);
              };
              const fields = (form) => Object.fromEntries(new FormData(form));
              document.getElementById("signup").onsubmit = (event) => {
                event.preventDefault();
                send("Signup", fields(event.target));
              };
              document.getElementById("join").onsubmit = (event) => {
                event.preventDefault();
                send("JoinClass", fields(event.target));
              };
            </script>
    `,
  );
}

function cookieList(names: string[]) {
  return html`<h2>Cookies received (names only)</h2>
    ${
    names.length === 0
      ? html`<p>None.</p>`
      : html`<ul>${names.map((name) => html`<li><code>${name}</code></li>`)}</ul>`
  }`;
}
