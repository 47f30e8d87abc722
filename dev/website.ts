/** @module A stand-in for the global marketing website that serves /about and /pricing in development. */
import { Hono } from "hono";
import { getCookie } from "hono/cookie";
import { html } from "hono/html";
import { type DevServer, page, serve } from "./_html.ts";

/** Where the stand-in website listens. */
export interface WebsiteOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Defaults to `127.0.0.1`. */
  hostname?: string;
}

const PAGES: Record<string, { title: string; text: string }> = {
  "/about": { title: "About", text: "One app for every classroom, served from your region." },
  "/pricing": { title: "Pricing", text: "Free for teachers. Schools: ask us." },
};

/**
 * Starts the global website on loopback. It has no sessions and no regions; its pages say
 * "Served by the global website" and list the cookies it received by name only.
 */
export function startWebsite(options: WebsiteOptions = {}): DevServer {
  const app = new Hono();
  for (const [path, { title, text }] of Object.entries(PAGES)) {
    app.get(path, (c) =>
      c.html(page(
        `${title} · global website`,
        html`
          <h1>${title}</h1>
          <p>Served by the global website</p>
          <p>${text}</p>
          <p>Cookies received (names only): ${Object.keys(getCookie(c)).join(", ") || "none"}</p>
          <p><a href="/">Home</a> · <a href="/about">About</a> · <a href="/pricing">Pricing</a></p>
        `,
      )));
  }
  app.notFound((c) =>
    c.html(
      page(
        "Not found · global website",
        html`
          <h1>Not found</h1>
          <p>Served by the global website</p>
        `,
      ),
      404,
    )
  );
  return serve(app, options);
}
