/**
 * @module What one upstream would receive from a request, described by cookie and header names
 * (values only for the headers vestibule sets itself), computed with the real `upstreamHeaders`.
 */
import { isPinCookieName } from "./app_names.ts";
import type { Upstream } from "./compile_rules.ts";
import { HeaderList } from "./header_list.ts";
import { filterCookieHeader } from "./cookies.ts";
import {
  type CookiePolicy,
  type ForwardContext,
  HOP_BY_HOP_HEADERS,
  impersonates,
  isOcapKeyHeader,
  isPinHeader,
  onFreshConnection,
  PROXY_CLAIMS,
  upstreamHeaders,
  URL_CLAIMS,
} from "./forward.ts";

/** Headers vestibule sets itself, whose incoming values only trusted proxies may pass on. */
const FORWARDED_FAMILY = ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];

/** Headers vestibule always sets itself; their values (like any it chooses) are safe to show. */
const SET_BY_VESTIBULE = [...FORWARDED_FAMILY, "x-real-ip", "via"];

/** A cookie or header that the upstream would not receive, and why. */
export interface Stripped {
  name: string;
  reason: string;
}

/** What one upstream would receive. Cookie names only, and header values only for vestibule's own. */
export interface ForwardPlan {
  cookies: { forwarded: string[]; stripped: Stripped[] };
  headers: {
    /** Client headers passed through unchanged (names only). */
    forwarded: string[];
    /** Headers vestibule sets itself, with their values. */
    set: Record<string, string>;
    /** Headers the rules file adds for this origin (names only: they often carry secrets). */
    fromRules: string[];
    stripped: Stripped[];
  };
}

/** Cookie names in a `Cookie` header, parsed the way forwarding parses them, without values. */
export function cookieNames(header: string | null): string[] {
  const names: string[] = [];
  filterCookieHeader(header, (name) => {
    if (!names.includes(name)) names.push(name);
    return false;
  });
  return names;
}

/** Runs the real {@linkcode upstreamHeaders} and describes its result by names and reasons. */
export function forwardPlan(
  incoming: Headers,
  upstream: Upstream,
  cookies: CookiePolicy,
  ctx: ForwardContext,
  method: string,
  webSocket = false,
): ForwardPlan {
  const sent = upstreamHeaders(new HeaderList(incoming), upstream, cookies, ctx).headers;
  const outgoing = new Headers(sent);
  const sentCookies = cookieNames(outgoing.get("cookie"));
  const plan: ForwardPlan = {
    cookies: { forwarded: [], stripped: [] },
    headers: {
      forwarded: [],
      set: {},
      // As sent: a range request goes out as identity whatever the rules file's accept-encoding.
      fromRules: upstream.headers.filter(([name, value]) =>
        sent.some(([n, v]) => n === name && v === value)
      ).map(([name]) => name),
      stripped: [],
    },
  };
  for (const name of cookieNames(incoming.get("cookie"))) {
    if (sentCookies.includes(name)) plan.cookies.forwarded.push(name);
    else {
      const allowed = "all" in cookies || cookies.only.has(name);
      plan.cookies.stripped.push({
        name,
        reason: isPinCookieName(name, ctx.pinCookie) ? "pin cookie" : allowed
          // `csrftoken=c, __Host-vestibule-region=au`: servers that split at commas or spaces
          // would read a cookie there that may not go.
          ? "its value hides a cookie that is not forwarded (read after a comma or space)"
          : "not in forward_cookies",
      });
    }
  }
  // X-Forwarded-* always, and any other header whose value upstreamHeaders() chose itself.
  // By name, each with its joined value: `Headers` yields every Set-Cookie on its own, and a
  // client's own copies compared one by one with the joined value read as vestibule's.
  for (const name of new Set(outgoing.keys())) {
    const value = outgoing.get(name)!;
    if (name === "cookie" || plan.headers.fromRules.includes(name)) continue;
    const own = SET_BY_VESTIBULE.includes(name);
    if (own || incoming.get(name) !== value) plan.headers.set[name] = value;
  }
  const connectionNamed = (incoming.get("connection") ?? "").toLowerCase().split(",")
    .map((s) => s.trim());
  for (const name of new Set(incoming.keys())) {
    const value = incoming.get(name)!;
    if (name === "cookie") continue;
    const strip = (reason: string) => plan.headers.stripped.push({ name, reason });
    if (plan.headers.fromRules.includes(name)) strip("replaced by the rules file's value");
    else if (name in plan.headers.set) {
      const forwardedFamily = FORWARDED_FAMILY.includes(name);
      // A client's Via is extended with vestibule's entry, not replaced: `set` shows the chain.
      if (outgoing.get(name) === value || name === "via") continue;
      if (forwardedFamily && !ctx.trustForwarded) {
        strip("replaced by vestibule: trusted_proxy_hops is 0");
      } else if (!forwardedFamily) strip("replaced by vestibule");
      // A trusted X-Forwarded-For is extended, not replaced: `set` shows the whole chain.
    } else if (outgoing.has(name)) plan.headers.forwarded.push(name);
    else if (HOP_BY_HOP_HEADERS.has(name)) strip("hop-by-hop");
    else if (isPinHeader(name, ctx.pinHeader)) strip("pin header");
    else if (isOcapKeyHeader(name)) strip("OCAP's key: only OCAP's mount reads it");
    else if (name === "proxy") strip("httpoxy: CGI servers hand it to the app as HTTP_PROXY");
    else if (URL_CLAIMS.has(name)) {
      strip("apps may read it as the URL, which the rules matched on the request line");
    } else if (impersonates(name, upstream)) {
      strip("other spelling (_ or . for -) of a header vestibule controls");
    } else if (name === "host") strip("the upstream gets its own host");
    else if (connectionNamed.includes(name)) strip("hop-by-hop: named in Connection");
    else if (PROXY_CLAIMS.has(name)) strip("not trusted: trusted_proxy_hops is 0");
    else strip("not forwarded");
  }
  const deno = `Deno/${Deno.version.deno}`;
  if (webSocket) {
    // proxyWebSocket(): Deno's WebSocket client writes its own handshake and User-Agent.
    const own = (n: string) => n.startsWith("sec-websocket-") || n === "accept-encoding";
    for (const n of plan.headers.forwarded.filter(own)) {
      plan.headers.stripped.push({ name: n, reason: "the WebSocket client writes its own" });
    }
    plan.headers.forwarded = plan.headers.forwarded.filter((n) => !own(n) && n !== "user-agent");
    delete plan.headers.set["accept-encoding"];
    plan.headers.fromRules = plan.headers.fromRules.filter((n) => !own(n));
    const ua = outgoing.get("user-agent");
    plan.headers.set["user-agent"] = ua ? `${deno}, ${ua}` : deno;
  } else {
    // Deno's fetch adds these when the request has none.
    for (
      const [name, value] of [["accept", "*/*"], ["accept-language", "*"], ["user-agent", deno]]
    ) {
      if (!outgoing.has(name)) plan.headers.set[name] = value;
    }
    if (onFreshConnection(method)) plan.headers.set["connection"] = "close";
  }
  return plan;
}
