/**
 * @module Explains how the router would handle a request, without contacting any upstream:
 * the rule, the region or upstream and why, and what would be forwarded or stripped.
 */
import { isIP } from "node:net";
import { assumeRegion, type CountryLookup } from "./assume_region.ts";
import { encodeBodyText } from "./body_text_encoding.ts";
import type { Config, Rule, SuccessRule, Upstream } from "./compile_rules.ts";
import type { CookiePolicy } from "./forward.ts";
import { checkMethod, hostHeaderFits, type RequestView, viewRequest } from "./request_view.ts";
import { cookieNames, type ForwardPlan, forwardPlan } from "./forward_plan.ts";
import { findRule, type RuleMatch } from "./match_rule.ts";
import { checkMethodOverride } from "./method_override.ts";
import { readPin, type RegionPin } from "./pin.ts";
import { BodyTooLargeError, BufferedBody } from "./request_body.ts";
import { HttpError } from "./http_error.ts";
import { chooseRegion, regionalCookies } from "./choose_region.ts";
import { redirectLocation } from "./redirect_location.ts";
import { routedPath, servedBy } from "./own_paths.ts";
import { mergeSlashes } from "./request_path.ts";
import { isSafeRequestId } from "./request_id.ts";
import { checkWebSocketHandshake, isWebSocketUpgrade } from "./websocket_proxy.ts";
import { HeaderList, trimOws } from "./header_list.ts";
import { asSentInUtf8 } from "./wire_text.ts";

export type { ForwardPlan, Stripped } from "./forward_plan.ts";

/** A request to explain, as an operator types it. */
export interface RequestDescription {
  method: string;
  /** An absolute URL, or a path (resolved against `https://localhost`). */
  url: string;
  headers?: HeadersInit;
  body?: string;
  /** The socket peer address vestibule would see; defaults to {@linkcode DEFAULT_CLIENT_IP}. */
  clientIp?: string;
}

/**
 * Header values as an operator typed them, in the octets a client sends for them: curl and
 * browsers write text in UTF-8, and the router reads each octet as one character (`é` as "Ã©").
 * For route-table cases; a `Headers` object already holds octets and is left alone.
 */
export function headersAsSent(headers: Record<string, string>): Array<[string, string]> {
  return Object.entries(headers).map(([name, value]) => [name, asSentInUtf8(value)]);
}

/** The address explain assumes for the client when none is given (RFC 5737 documentation range). */
export const DEFAULT_CLIENT_IP = "192.0.2.1";

/** Where a URL given as a bare path is resolved; only its scheme matters unless `Host` is absent. */
const BASE_URL = "https://localhost";

/** Shown for the `X-Request-Id` the router would make: a new UUID for every request. */
const NEW_REQUEST_ID = "(new UUID per request)";

/** An origin the request would be sent to. */
export interface Target {
  kind: Upstream["kind"];
  id: string;
  origin: string;
  forward: ForwardPlan;
}

/** How vestibule would handle a request. */
export interface Explanation {
  method: string;
  url: string;
  /** Rules tried before the one that matched (all of them when none did). */
  tried: string[];
  /** The matching rule; absent when vestibule answers by itself (see `refused`). */
  rule?: string;
  /** Position of the rule in the rules file. */
  index?: number;
  type?: Rule["type"];
  /** Regional rules: the chosen region. */
  region?: string;
  /** Broadcast rules: every region, in rules-file order. */
  regions?: string[];
  /** Global proxy rules: the upstream's name. */
  upstream?: string;
  /** Why this region: pin header, pin cookie, region_from, geo header, geo ip, default, broadcast. */
  reason?: string;
  /** The country behind a geo decision. */
  country?: string;
  /** Global redirect rules: where the client is sent, and with which status. */
  location?: string;
  status?: number;
  /** The pin the request carries, if it names a region. */
  pin?: RegionPin;
  /** The origins that would be contacted; empty for redirects and refusals. */
  targets: Target[];
  /** Answered by vestibule itself instead of an upstream. */
  refused?: { status: number; code: string; message: string };
  /** Not routed at all: vestibule's own endpoints, or OCAP's mount. */
  servedBy?: "vestibule" | "ocap";
  /** Details an operator should know, in plain sentences. */
  notes: string[];
}

/** Options for {@linkcode explainRequest}. */
export interface ExplainOptions {
  /** IP → country, when `geo.ip_lookup` is on; without it the IP lookup is skipped. */
  countryLookup?: CountryLookup;
}

/**
 * Decides what the router would do with `described` under `config`, reading the body only as
 * the matchers do. Throws `TypeError` for a request that cannot be built (bad URL, a GET body).
 */
export async function explainRequest(
  described: RequestDescription,
  config: Config,
  options: ExplainOptions = {},
): Promise<Explanation> {
  const { method } = described;
  const refused = (error: HttpError): Explanation => ({
    method,
    url: withoutUserinfo(target),
    tried: [],
    refused: refusalOf(error),
    targets: [],
    notes: [],
  });
  // The router's peer is always an address; `1.2.3.4:5678` pasted from a log is not one.
  if (described.clientIp !== undefined && isIP(described.clientIp) === 0) {
    throw new TypeError(`Cannot explain with client IP "${described.clientIp}": not an IP address`);
  }
  // As the router does, before any refusal: whatever the method, these are not the rules' to route.
  const target = describedUrl(described);
  // Deno.serve answers a bare 400 itself, before the router, to a body framing it cannot take.
  const transfer = headerPairs(described.headers)
    .filter(([name]) => name.toLowerCase() === "transfer-encoding").map(([, v]) => v).join(", ");
  if (transfer !== "" && !servedFraming(transfer)) {
    return refused(
      new HttpError(400, "bad_request", `Deno.serve refuses Transfer-Encoding "${transfer}"`),
    );
  }
  // The smuggling shapes: a length beside chunked, or lengths that disagree or are no number.
  const lengths = headerPairs(described.headers)
    .filter(([name]) => name.toLowerCase() === "content-length").map(([, v]) => v);
  if (lengths.length > 0 && (transfer !== "" || !servedLengths(lengths))) {
    const framing = transfer === "" ? "" : ` beside Transfer-Encoding "${transfer}"`;
    return refused(
      new HttpError(
        400,
        "bad_request",
        `Deno.serve refuses Content-Length "${lengths.join(", ")}"${framing}`,
      ),
    );
  }
  // Deno.serve answers a bare 400 to a field value holding a control octet (HTAB aside).
  if (headerPairs(described.headers).some(([, value]) => CONTROL_OCTET.test(value))) {
    return refused(
      new HttpError(400, "bad_request", "Deno.serve refuses a header value with a control octet"),
    );
  }
  const own = servedBy(routedPath(target), config.ocap?.path);
  // The router serves its own paths only under a Host that fits (the URL's when none is given,
  // as the request would carry it); another, or two, is a 400.
  const hosts = headerPairs(described.headers).filter(([name]) => name.toLowerCase() === "host");
  const host = hosts.length === 0 ? target.host : trimOws(hosts[0][1]);
  if (own && hosts.length < 2 && hostHeaderFits(host)) {
    return {
      method,
      url: withoutUserinfo(target),
      tried: [],
      servedBy: own,
      targets: [],
      notes: [
        own === "ocap"
          ? "OCAP's mount: handled by the outgoing caching proxy, not by the rule table"
          : "vestibule's own endpoint (GET or HEAD health and metrics; 404 for anything else): no rule is tried",
      ],
    };
  }
  let request: Request;
  let implied: Implied = { host: false, contentLength: false };
  let view: RequestView;
  try {
    // Before `new Request`, which upper-cases `get` and refuses TRACE: the router sees both.
    checkMethod(method);
    ({ request, implied } = buildRequest(method, described));
    // The router sends a request id upstream: the client's when it is safe, else a new UUID.
    const incomingId = request.headers.get("x-request-id");
    view = viewRequest(request, config, {
      // As if vestibule listened on the scheme the URL names (https for a bare path).
      scheme: request.url.startsWith("http:") ? "http" : "https",
      remoteIp: described.clientIp ?? DEFAULT_CLIENT_IP,
      requestId: isSafeRequestId(incomingId) ? incomingId : NEW_REQUEST_ID,
    });
  } catch (error) {
    if (error instanceof HttpError) return refused(error);
    throw error;
  }
  const { url, facts, clientIp, forward } = view;
  const headers = request.headers;
  const out: Explanation = {
    method,
    url: withoutUserinfo(url),
    tried: [],
    targets: [],
    notes: [],
  };
  // Targets and notes last, so the JSON output reads top to bottom like the text.
  const done = (): Explanation => {
    const { targets, notes, ...decision } = out;
    return { ...decision, targets, notes };
  };

  let match: RuleMatch | undefined;
  const body = new BufferedBody(request, config.bodyLimitBytes);
  try {
    match = await findRule(config.rules, facts, body);
  } catch (error) {
    out.refused = refusalOf(error);
    return done();
  }
  if (!match) {
    out.tried = config.rules.map((r) => r.name);
    out.refused = {
      status: 404,
      code: "no_rule",
      // As the router words it: a HEAD's answer has its GET's length.
      message: `No rule matches ${method === "HEAD" ? "GET" : method} ${url.pathname}`,
    };
    return done();
  }

  const { rule } = match;
  const tried = config.rules.slice(0, rule.index).map((r) => r.name);
  Object.assign(out, { tried, rule: rule.name, index: rule.index, type: rule.type });
  try {
    await checkMethodOverride(config, facts, body, rule);
  } catch (error) {
    // The override's rule may read the body, as the router does (413 there too).
    out.refused = refusalOf(error);
    return done();
  }
  const pin = readPin(headers, config);
  if (pin) out.pin = pin;
  const assumed = assumeRegion(headers, clientIp, config, options.countryLookup);

  // Only proxied rules relay a WebSocket (route_context.ts); broadcast sends every region a fetch.
  const webSocket = rule.type !== "broadcast" &&
    isWebSocketUpgrade(method, new HeaderList(headers));
  if (webSocket && !(rule.type === "global" && rule.action.kind === "redirect")) {
    try {
      checkWebSocketHandshake(new HeaderList(headers));
    } catch (error) {
      out.refused = refusalOf(error);
      return done();
    }
  }
  const plan = (upstream: Upstream, cookies: CookiePolicy): Target => ({
    kind: upstream.kind,
    id: upstream.id,
    origin: upstream.origin,
    forward: withoutImplied(
      forwardPlan(headers, upstream, cookies, forward, method, webSocket),
      implied,
    ),
  });
  const ctx = {
    config,
    match,
    searchParams: facts.searchParams,
    pathAndQuery: url.pathname + url.search,
    // The query as typed: the router redirects with the client's own bytes.
    request: { url: described.url },
    pin,
    assumed,
  };

  switch (rule.type) {
    case "global": {
      if (rule.action.kind === "redirect") {
        try {
          out.location = redirectLocation(rule.action.location, ctx);
          out.status = rule.action.status;
          out.notes.push("Answered by vestibule with a redirect: no upstream is contacted");
        } catch (error) {
          out.refused = refusalOf(error);
        }
        break;
      }
      out.upstream = rule.action.upstream.id;
      out.targets.push(plan(rule.action.upstream, { only: rule.forwardCookies }));
      break;
    }
    case "regional": {
      let choice;
      try {
        // `region_from.query` reads a form body's field too, as the router does.
        choice = await chooseRegion(rule, { ...ctx, body, headers, method });
      } catch (error) {
        out.refused = refusalOf(error);
        return done();
      }
      const { region, reason } = choice;
      out.region = region;
      out.reason = reason;
      if (reason === assumed.reason && assumed.country) out.country = assumed.country;
      out.notes.push(...pinNotes(headers, config, pin));
      const pinnedHere = pin?.region === region;
      if (pinnedHere) {
        out.notes.push(`Pinned to "${region}": every cookie but the pin cookie is sent`);
      } else if (pin) {
        out.notes.push(
          `The request is pinned to "${pin.region}", not "${region}": only forward_cookies are sent`,
        );
      } else {
        out.notes.push("Not pinned: only forward_cookies are sent");
      }
      if (rule.pinOn && reason === "region_from") {
        out.notes.push(`Pins the browser to "${region}" when the answer matches pin_on`);
      } else if (rule.pinOn) {
        out.notes.push("The request names no region: pin_on does not apply, nothing is pinned");
      }
      out.targets.push(
        plan(
          config.regions.get(region)!,
          regionalCookies(region, pin, config),
        ),
      );
      break;
    }
    case "broadcast": {
      // routes/broadcast.ts buffers the whole body before it calls any region.
      if (method !== "GET" && method !== "HEAD") {
        try {
          await body.bytes();
        } catch (error) {
          out.refused = refusalOf(error);
          return done();
        }
      }
      out.regions = [...config.regionIds];
      out.reason = "broadcast";
      out.notes.push(...pinNotes(headers, config, pin));
      // The same preference routes/broadcast.ts hands to chooseOutcome().
      const preferred = `"${pin?.region ?? assumed.region}" (${pin ? pin.source : assumed.reason})`;
      out.notes.push(
        "Sent to every region at once; the region whose answer matches success answers the " +
          "client and the browser is pinned to it",
        rule.allowMultipleSuccess
          ? `If several regions succeed, ${preferred} wins, then rules-file order`
          : "If several regions succeed, the client gets 502 broadcast_ambiguous",
        `If none succeeds, the client gets the best failure (non-5xx first${
          rule.preferFailure ? ", then answers matching prefer_failure" : ""
        }), ties going to ${preferred}`,
      );
      out.notes.push(`Success: ${describeSuccess(rule.success)}`);
      if (rule.preferFailure) {
        out.notes.push(
          `Preferred failure (prefer_failure): ${describeSuccess(rule.preferFailure)}`,
        );
      }
      // routes/broadcast.ts: the rule's timeout_ms, else each region's own.
      out.notes.push(
        rule.timeoutMs !== undefined
          ? `Waits for each region's answer up to the rule's timeout_ms: ${rule.timeoutMs} ms`
          : `Waits for each region's answer up to its timeout_ms: ${
            config.regionIds.map((id) => `${id} ${config.regions.get(id)!.timeoutMs} ms`).join(", ")
          }`,
        "If no region answers: 502 broadcast_unavailable (504 upstream_timeout when all timed out)",
      );
      for (const id of config.regionIds) {
        out.targets.push(plan(config.regions.get(id)!, { only: rule.forwardCookies }));
      }
      break;
    }
    default: {
      const unknownRule: never = rule;
      throw new TypeError(`Unknown rule type in ${JSON.stringify(unknownRule)}`);
    }
  }
  // The router would have asked its IP database exactly when the assumption fell to the default
  // without a country from the geo header.
  const assumedUsed = rule.type === "regional" ? out.reason === "default" : !pin;
  if (
    config.geo.ipLookup && !options.countryLookup && assumed.reason === "default" &&
    !assumed.country && rule.type !== "global" && assumedUsed
  ) {
    out.notes.push(
      "geo.ip_lookup is on but no IP database is loaded here: the IP was not looked up",
    );
  }
  return done();
}

/** The described URL, or a bare path on {@linkcode BASE_URL}. Throws `TypeError`. */
function describedUrl(described: RequestDescription): URL {
  let url: URL;
  try {
    // A path is a path, even one that starts with "//" (the router reads it so).
    // Anything else must be absolute: `app.example.com/about` is no path on localhost.
    url = described.url.startsWith("/")
      ? new URL(BASE_URL + described.url)
      : new URL(described.url);
    mergeSlashes(url);
  } catch {
    // A URL may carry credentials (`https://user:pass@…`): not echoed then.
    const shown = described.url.includes("@") ? "the URL" : `"${described.url}"`;
    throw new TypeError(`Cannot explain ${shown}: not a URL or a path`);
  }
  // Another scheme does reach vestibule (`GET foo://host/x HTTP/1.1`): refused as the router
  // refuses it, 400 `bad_path`.
  return url;
}

/** The request the router would get, and which of its headers explain added as a client would. */
function buildRequest(
  method: string,
  described: RequestDescription,
): { request: Request; implied: Implied } {
  const url = describedUrl(described);
  const headers = new Headers();
  const cookies: string[] = [];
  for (const [name, value] of headerPairs(described.headers)) {
    if (name.toLowerCase() === "cookie") cookies.push(trimOws(value));
    else headers.append(name, value);
  }
  // `Headers` joins repeated Cookie fields with ", "; Deno.serve joins them with "; ", as HTTP/2
  // says, and so does a browser's single header.
  if (cookies.length > 0) headers.set("cookie", cookies.join("; "));
  // Every request reaches the router with one (HTTP/1.1 requires it; the router reads HTTP/2's
  // :authority as Host): a `match.headers.host` rule tests it.
  const implied: Implied = { host: !headers.has("host"), contentLength: false };
  if (implied.host) headers.set("host", url.host);
  // Deno.serve builds an origin-form request's URL from its Host, and the router takes the URL's
  // host: a Host given beside an absolute URL describes the request as it would arrive.
  else {
    // The URL setter would keep the old port beside a Host without one.
    const given = URL.parse(`${url.protocol}//${headers.get("host")}/`);
    if (given) [url.hostname, url.port] = [given.hostname, given.port];
  }
  // Bytes, not a string: a string body would make `Request` invent a text/plain Content-Type.
  // In the declared charset, as the client sends them: a regex matcher reads the text so.
  let body: Uint8Array<ArrayBuffer> | undefined;
  if (described.body !== undefined) {
    if (method === "GET" || method === "HEAD") {
      // `Request` cannot carry it; a length is enough for the router's refusal, in whatever
      // charset (one explain cannot write is still a body).
      headers.set("content-length", String(described.body.length));
    } else {
      body = encodeBodyText(described.body, headers.get("content-type"));
      // As curl --data, a form or fetch send it: with its length (a router that sees one may
      // decide without reading, as region_from does for a body over the limit).
      if (!headers.has("content-length") && !headers.has("transfer-encoding")) {
        headers.set("content-length", String(body.byteLength));
        implied.contentLength = true;
      }
    }
  }
  return { request: new Request(url, { method, headers, body }), implied };
}

/**
 * A URL as written, as explain and check-rules print it: userinfo (a password, say) masked. One
 * the URL parser does not read as http(s) (a port over 65535, or curl's `user:pw@host/x`, whose
 * `user:` it takes for a scheme) is cut by its text: everything before the last `@` of its
 * authority.
 */
export function shownUrl(text: string): string {
  const url = URL.parse(text);
  if (url && (url.protocol === "http:" || url.protocol === "https:")) {
    return url.username || url.password ? withoutUserinfo(url) : text;
  }
  if (text.startsWith("/")) return text; // a path: an `@` there is no userinfo
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(text)?.[0].length ?? 0;
  // The userinfo ends before the path, query or fragment; but a password the parser refused may
  // hold a raw `#` or `?` itself (`ops:hun#ter2@host`): then its `@` is before the first `/`.
  const lastAt = (end: number) => (end === -1 ? text : text.slice(0, end)).lastIndexOf("@");
  const at = Math.max(lastAt(text.search(/[?#]/)), lastAt(text.indexOf("/", scheme)));
  if (at === -1) return text;
  return `${text.slice(0, scheme)}***${text.slice(at)}`;
}

/** `url` as explain prints it: userinfo masked (see {@linkcode shownUrl}). */
function withoutUserinfo(url: URL): string {
  if (url.protocol !== "http:" && url.protocol !== "https:") return shownUrl(url.href);
  if (!url.username && !url.password) return url.href;
  const shown = new URL(url.href);
  shown.username = "***";
  shown.password = "";
  return shown.href;
}

/** The plan without the `Host` explain added itself: the user wrote none to be stripped. */
function withoutImplied(plan: ForwardPlan, implied: Implied): ForwardPlan {
  if (!implied.host && !implied.contentLength) return plan;
  const stripped = implied.host
    ? plan.headers.stripped.filter((s) => s.name !== "host")
    : plan.headers.stripped;
  const forwarded = implied.contentLength
    ? plan.headers.forwarded.filter((name) => name !== "content-length")
    : plan.headers.forwarded;
  return { ...plan, headers: { ...plan.headers, stripped, forwarded } };
}

/** Headers explain added as a client would, not shown as the described request's own. */
interface Implied {
  host: boolean;
  contentLength: boolean;
}

/** The header fields one by one; iterating a `Headers` would have joined repeated ones. */
function headerPairs(init: HeadersInit | undefined): Array<[string, string]> {
  if (init === undefined) return [];
  if (init instanceof Headers || Symbol.iterator in init) {
    return Array.from(init as Iterable<string[]>, ([name, value]) => [name, value]);
  }
  return Object.entries(init);
}

/**
 * Whether Deno.serve (hyper) reads a request body framed with `transfer`: `chunked` once and
 * last, no parameters, no `identity` (found by trying; it answers 400 to anything else).
 */
function servedFraming(transfer: string): boolean {
  const codings = transfer.split(",").map((c) => c.trim().toLowerCase());
  return codings.at(-1) === "chunked" && codings.indexOf("chunked") === codings.length - 1 &&
    !codings.includes("identity");
}

/**
 * Whether Deno.serve takes these `Content-Length` lines: each one a number (not a list: `5, 5` on
 * one line is a 400, on two lines not) that fits 64 bits, all the same.
 */
function servedLengths(lines: string[]): boolean {
  const values = lines.map((line) => line.trim());
  if (!values.every((v) => /^\d+$/.test(v) && BigInt(v) <= MAX_U64)) return false;
  return new Set(values.map(BigInt)).size === 1;
}

const MAX_U64 = 2n ** 64n - 1n;

/** A control octet other than HTAB (CR, LF and NUL `Headers` refuses itself). */
// deno-lint-ignore no-control-regex -- control octets are what it finds
const CONTROL_OCTET = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Why a pin the request carries was not used; the values themselves are never shown. */
function pinNotes(headers: Headers, config: Config, pin: RegionPin | undefined): string[] {
  const notes: string[] = [];
  if (headers.has(config.pin.header) && pin?.source !== "pin header") {
    notes.push(`The pin header "${config.pin.header}" does not name a region: ignored`);
  }
  if (cookieNames(headers.get("cookie")).includes(config.pin.cookie)) {
    if (pin?.source === "pin header") {
      notes.push(`The pin cookie "${config.pin.cookie}" is not read: the pin header wins`);
    } else if (!pin) {
      notes.push(`The pin cookie "${config.pin.cookie}" does not name a region: ignored`);
    }
  }
  return notes;
}

/**
 * What the router answers for an error its route step throws (app.ts): 413 `body_too_large`, or
 * an `HttpError`'s own status and code. Anything else is a failure of explain's, and rethrown.
 */
function refusalOf(error: unknown): NonNullable<Explanation["refused"]> {
  if (error instanceof BodyTooLargeError) {
    return { status: 413, code: "body_too_large", message: error.message };
  }
  if (error instanceof HttpError) {
    return { status: error.status, code: error.code, message: error.message };
  }
  throw error;
}

/**
 * A success rule in words, every condition joined by "and". A header's regex is not shown, nor an
 * `equals` value that holds a string: either may hold a `${NAME}` secret's value.
 */
function describeSuccess(rule: SuccessRule): string {
  const parts: string[] = [];
  const { status } = rule;
  if (status) {
    parts.push(`status ${"class" in status ? `${status.class}xx` : [...status].join(" or ")}`);
  }
  if (rule.setCookie) parts.push(`a live "${rule.setCookie}" cookie`);
  for (const [name] of rule.headers ?? []) parts.push(`a "${name}" header matching its regex`);
  if (rule.json) {
    const path = rule.json.path.join(".");
    if (rule.json.hasEquals) {
      const equals = JSON.stringify(rule.json.equals) ?? "null";
      const shown = equals.includes('"') ? "the rules file's value" : equals;
      parts.push(`"${path}" equal to ${shown} in the JSON body`);
    } else {
      parts.push(rule.json.exists ? `"${path}" in the JSON body` : `no "${path}" in the JSON body`);
    }
  }
  return parts.join(" and ");
}
