/** @module Compiles a validated rules file into the structures the router reads per request. */
import type { MatchInput, RulesFile, SuccessInput } from "./rules_schema.ts";
import { REDIRECT_STATUSES } from "./redirect_statuses.ts";
import { hasCgiSeparator } from "./cgi_name.ts";
import type { PathPolicy } from "./request_path.ts";
import { matchablePath } from "./matchable_path.ts";
import { OWN_PREFIX } from "./own_paths.ts";
import { checkMethod } from "./request_view.ts";
import { asSentInUtf8, hasNonAscii } from "./wire_text.ts";
import { cookieName } from "./cookies.ts";

/** An HTTP origin vestibule forwards to, resolved once at start-up. */
export interface Upstream {
  /** Region id or upstream name, as written in the rules file. */
  id: string;
  kind: "region" | "upstream";
  /** `scheme://host[:port]` without a trailing slash. */
  origin: string;
  /** What the origin expects in `Host`. */
  host: string;
  headers: ReadonlyArray<readonly [string, string]>;
  /**
   * Some configured header is named with `_` or `.`: then a client's dash spelling of it is one
   * more name CGI-style servers read as it (see `cgiName` and `impersonates` in forward.ts).
   */
  cgiSpelledHeaders?: boolean;
  timeoutMs: number;
}

/** A compiled body matcher; the body is read only when every cheaper condition already holds. */
export type BodyMatcher =
  | { kind: "json"; subset: Record<string, unknown> }
  | { kind: "form"; fields: ReadonlyArray<readonly [string, string]> }
  | { kind: "regex"; regex: RegExp };

/** A compiled `match` block; an absent field always holds. */
export interface CompiledMatch {
  methods?: ReadonlySet<string>;
  path?: RegExp;
  host?: RegExp;
  query?: ReadonlyArray<readonly [string, RegExp]>;
  headers?: ReadonlyArray<readonly [string, RegExp]>;
  body?: BodyMatcher;
}

/** A compiled success rule (broadcast owner discovery, `pin_on`). */
export interface SuccessRule {
  status?: ReadonlySet<number> | { class: number };
  setCookie?: string;
  headers?: ReadonlyArray<readonly [string, RegExp]>;
  json?: { path: readonly string[]; equals?: unknown; hasEquals: boolean; exists?: boolean };
}

interface RuleCommon {
  name: string;
  /** Position in the rules file, for messages. */
  index: number;
  match: CompiledMatch;
  /**
   * The request headers a `match.headers` of this rule or of one before it tests: they decided
   * that this rule, not another, answers, so a cached answer varies by them (`region_vary.ts`).
   */
  chosenBy: readonly string[];
}

/** Proxies to a global upstream or answers with a redirect. */
export interface GlobalRule extends RuleCommon {
  type: "global";
  action:
    | { kind: "proxy"; upstream: Upstream }
    | { kind: "redirect"; location: string; status: number };
  forwardCookies: ReadonlySet<string>;
  /** Overrides the upstream's `timeout_ms`. */
  timeoutMs?: number;
}

/** Sends the request to one region: pinned, taken from the request, or assumed. */
export interface RegionalRule extends RuleCommon {
  type: "regional";
  regionFrom?: { pathGroup: string } | { query: string };
  pinOn?: SuccessRule;
  /** Overrides the region's `timeout_ms`. */
  timeoutMs?: number;
}

/** Fans the request out to every region and returns the one success. */
export interface BroadcastRule extends RuleCommon {
  type: "broadcast";
  success: SuccessRule;
  /** With no success, failures matching this rank first (the owner's "wrong password"). */
  preferFailure?: SuccessRule;
  allowMultipleSuccess: boolean;
  timeoutMs?: number;
  forwardCookies: ReadonlySet<string>;
}

/** One compiled rule. */
export type Rule = GlobalRule | RegionalRule | BroadcastRule;

/** Everything the router needs, validated and resolved. */
export interface Config {
  regions: ReadonlyMap<string, Upstream>;
  /** Region ids in rules-file order: broadcast tie-breaks follow it. */
  regionIds: readonly string[];
  upstreams: ReadonlyMap<string, Upstream>;
  defaultRegion: string;
  geo: { header?: string; countries: ReadonlyMap<string, string>; ipLookup: boolean };
  pin: {
    cookie: string;
    header: string;
    maxAgeSeconds: number;
    secure: boolean;
    sameSite: "Lax" | "None";
  };
  forwardCookies: ReadonlySet<string>;
  trustedProxyHops: number;
  bodyLimitBytes: number;
  /** How long a body that matchers or broadcast read may take to arrive (408 `body_timeout`). */
  bodyTimeoutMs: number;
  debugHeaders: boolean;
  serverTiming: boolean;
  /** The `Via` entry vestibule adds upstream (`1.1 vestibule`), and finds again in a loop. */
  via: { entry: string; pseudonym: string };
  /** What paths may hold that apps read as another path (`lib/request_path.ts`). */
  paths: PathPolicy;
  rules: readonly Rule[];
  /** The validated `ocap` section, if any; OCAP compiles its own part. */
  ocap?: RulesFile["ocap"];
}

/** Thrown when the rules file describes an impossible configuration; lists every problem. */
export class RulesError extends Error {
  constructor(readonly problems: string[]) {
    super(
      problems.length === 1
        ? problems[0]
        : `Cannot compile rules: ${problems.length} problems\n  - ${problems.join("\n  - ")}`,
    );
    this.name = "RulesError";
  }
}

/** Parses an origin URL, or explains why it is not one. */
export function parseOrigin(value: string): { origin: string; host: string } | string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `"${redacted(value)}" is not an absolute http(s) URL`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `"${redacted(value)}" is not an absolute http(s) URL`;
  }
  if (url.pathname !== "/" || url.search || url.hash || url.username || url.password) {
    return `"${redacted(value)}" must be an origin only (no path, query, fragment or credentials)`;
  }
  return { origin: url.origin, host: url.host };
}

/**
 * An origin as an error may quote it: origins usually come from `${NAME}` references, and start-up
 * errors end up in logs, so credentials and a query (where tokens travel) become `***`.
 */
export function redacted(value: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(value)?.[0] ?? "";
  // Up to the last `@`: a password that breaks the URL may hold `/`, `?`, `#` or `@` itself.
  const at = value.lastIndexOf("@");
  const rest = at === -1 ? value.slice(scheme.length) : `***@${value.slice(at + 1)}`;
  return scheme + rest.replace(/[?#].*/s, "?***");
}

/** Compiles a rules file that already passed the zod schema; throws {@linkcode RulesError}. */
export function compileRules(
  file: RulesFile,
  options: {
    /**
     * Whether a string came from a `${NAME}` reference: checks that read a regex's text skip it,
     * since `check-rules --placeholder-env` puts `http://NAME.invalid` there, not the real value,
     * and must judge the file as start-up does.
     */
    fromEnvironment?: (value: string) => boolean;
  } = {},
): Config {
  const fromEnvironment = options.fromEnvironment ?? (() => false);
  const problems: string[] = [];
  const regions = compileOrigins(file.regions, "region", "regions", problems);
  const upstreams = compileOrigins(file.upstreams, "upstream", "upstreams", problems);
  for (const id of Object.keys(file.upstreams)) {
    // Logs, metrics and explain name an upstream and a region alike: one name, one origin.
    if (Object.hasOwn(file.regions, id)) {
      problems.push(`upstreams.${id}: "${id}" is already a region's name`);
    }
  }

  // References are checked against the declared names: a region whose origin failed above is
  // already reported, and must not also be called missing.
  const declaredRegion = (id: string) => Object.hasOwn(file.regions, id);
  if (!declaredRegion(file.default_region)) {
    problems.push(`default_region: "${file.default_region}" is not a region`);
  }
  const countries = new Map<string, string>();
  for (const [country, region] of Object.entries(file.geo.countries)) {
    if (!declaredRegion(region)) {
      problems.push(`geo.countries.${country}: "${region}" is not a region`);
    }
    countries.set(country, region);
  }
  if (countries.size > 0 && file.geo.header === undefined && !file.geo.ip_lookup) {
    problems.push(
      "geo.countries: nothing reads a country (set geo.header, geo.ip_lookup or both), so every request would get default_region",
    );
  }
  if (file.pin.same_site === "none" && !file.pin.secure) {
    problems.push(
      'pin.same_site: "none" needs secure: true (Chrome and Edge refuse SameSite=None without Secure)',
    );
  }
  const cookieNeedsSecure = /^__(Host|Secure)-/i.test(file.pin.cookie);
  if (cookieNeedsSecure && !file.pin.secure) {
    problems.push(
      `pin.secure: the cookie "${file.pin.cookie}" has a __Host-/__Secure- prefix, which browsers only accept with secure: true`,
    );
  }

  const rules: Rule[] = [];
  const seen = new Map<string, number>();
  let catchAll: string | undefined;
  /** Earlier rules that take every request of some methods or on some host. */
  const broad: Array<{ name: string; match: MatchInput }> = [];
  /** Header names the rules so far test (`chosenBy`). */
  const testedHeaders = new Set<string>();
  file.rules.forEach((input, index) => {
    const where = `rule "${input.name}" (rules[${index}])`;
    const fail = (detail: string) => problems.push(`Cannot compile ${where}: ${detail}`);
    if (seen.has(input.name)) fail(`duplicate name, also rules[${seen.get(input.name)}]`);
    seen.set(input.name, index);
    if (catchAll !== undefined) {
      fail(`it can never match: rule "${catchAll}" before it is a catch-all`);
    } else {
      const shadow = broad.find((earlier) => takesEvery(earlier.match, input.match ?? {}));
      if (shadow) {
        fail(`it can never match: rule "${shadow.name}" before it takes every request it would`);
      }
    }
    if (isCatchAll(input.match)) catchAll ??= input.name;
    else if (onlyMethodsAndHost(input.match!)) {
      broad.push({ name: input.name, match: input.match! });
    }

    const match = compileMatch(input.match ?? {}, fail, fromEnvironment);
    for (const [name] of match.headers ?? []) testedHeaders.add(name);
    const chosenBy = [...testedHeaders];
    switch (input.type) {
      case "global": {
        if ((input.upstream === undefined) === (input.redirect === undefined)) {
          fail("a global rule needs exactly one of upstream or redirect");
          return;
        }
        let action: GlobalRule["action"];
        if (input.upstream !== undefined) {
          if (!Object.hasOwn(file.upstreams, input.upstream)) {
            return fail(`upstream: "${input.upstream}" is not in upstreams`);
          }
          // Absent only when its origin failed, which is reported already.
          const upstream = upstreams.get(input.upstream)!;
          action = { kind: "proxy", upstream };
        } else {
          const { location, status } = input.redirect!;
          if (!REDIRECT_STATUSES.has(status)) {
            fail(`redirect.status: ${status} is not a redirect status (301, 302, 303, 307, 308)`);
          }
          action = { kind: "redirect", location, status };
          checkRedirectLocation(location, match.path, fail);
          if (input.timeout_ms !== undefined) {
            fail("timeout_ms: a redirect rule calls no upstream");
          }
          if (input.forward_cookies !== undefined) {
            fail("forward_cookies: a redirect rule calls no upstream");
          }
        }
        rules.push({
          type: "global",
          name: input.name,
          index,
          match,
          chosenBy,
          action,
          forwardCookies: wireNames(input.forward_cookies ?? file.forward_cookies),
          timeoutMs: input.timeout_ms,
        });
        return;
      }
      case "regional": {
        const from = input.region_from;
        if (input.pin_on && !from) {
          fail("pin_on: needs region_from; only a region the request names is ever pinned");
        }
        // A path that did not compile is reported already, groups or not.
        if (from && "path_group" in from && match.path !== UNCOMPILED) {
          const groups = match.path ? namedGroups(match.path) : [];
          if (!groups.includes(from.path_group)) {
            fail(
              `region_from.path_group: match.path has no named group "${from.path_group}"`,
            );
          }
        }
        rules.push({
          type: "regional",
          name: input.name,
          index,
          match,
          chosenBy,
          regionFrom: from
            ? ("path_group" in from ? { pathGroup: from.path_group } : { query: from.query })
            : undefined,
          pinOn: input.pin_on ? compileSuccess(input.pin_on, "pin_on", fail) : undefined,
          timeoutMs: input.timeout_ms,
        });
        return;
      }
      case "broadcast": {
        rules.push({
          type: "broadcast",
          name: input.name,
          index,
          match,
          chosenBy,
          success: compileSuccess(input.success, "success", fail),
          preferFailure: input.prefer_failure
            ? compileSuccess(input.prefer_failure, "prefer_failure", fail)
            : undefined,
          allowMultipleSuccess: input.allow_multiple_success,
          timeoutMs: input.timeout_ms,
          forwardCookies: wireNames(input.forward_cookies ?? file.forward_cookies),
        });
        return;
      }
      default: {
        const unknownRule: never = input;
        fail(`unknown type in ${JSON.stringify(unknownRule)}`);
      }
    }
  });

  if (file.ocap) {
    if (`${file.ocap.path}/`.startsWith(OWN_PREFIX)) {
      problems.push(
        `ocap.path: "${file.ocap.path}" is under ${OWN_PREFIX}, which vestibule answers itself`,
      );
    }
    for (const [name, target] of Object.entries(file.ocap.targets)) {
      const parsed = parseOrigin(target.origin);
      if (typeof parsed === "string") problems.push(`ocap.targets.${name}.origin: ${parsed}`);
    }
  }

  if (problems.length > 0) throw new RulesError(problems);
  return {
    regions,
    regionIds: [...regions.keys()],
    upstreams,
    defaultRegion: file.default_region,
    geo: { header: file.geo.header?.toLowerCase(), countries, ipLookup: file.geo.ip_lookup },
    pin: {
      cookie: file.pin.cookie,
      header: file.pin.header.toLowerCase(),
      maxAgeSeconds: file.pin.max_age_seconds,
      secure: file.pin.secure,
      sameSite: file.pin.same_site === "none" ? "None" : "Lax",
    },
    forwardCookies: wireNames(file.forward_cookies),
    trustedProxyHops: file.trusted_proxy_hops,
    bodyLimitBytes: file.body_limit_bytes,
    bodyTimeoutMs: file.body_timeout_ms,
    debugHeaders: file.debug_headers,
    serverTiming: file.server_timing,
    via: { entry: `1.1 ${file.via_pseudonym}`, pseudonym: file.via_pseudonym },
    paths: {
      allowEncodedSlashes: file.paths.allow_encoded_slashes,
      allowSemicolons: file.paths.allow_semicolons,
    },
    rules,
    ocap: file.ocap,
  };
}

function compileOrigins(
  entries: RulesFile["regions"],
  kind: Upstream["kind"],
  section: string,
  problems: string[],
): Map<string, Upstream> {
  const out = new Map<string, Upstream>();
  for (const [id, entry] of Object.entries(entries)) {
    const parsed = parseOrigin(entry.origin);
    if (typeof parsed === "string") {
      problems.push(`${section}.${id}.origin: ${parsed}`);
      continue;
    }
    // fetch writes these itself and drops a value given for them: nginx's
    // `proxy_set_header Host` would start, and every request reach the origin's own host.
    for (const name of Object.keys(entry.headers)) {
      if (/^(?:host|content-length|transfer-encoding)$/i.test(name)) {
        problems.push(
          `${section}.${id}.headers.${name}: fetch sets ${name} itself and drops this value` +
            (/^host$/i.test(name) ? "; put the host to send in origin" : ""),
        );
      }
      // It would replace vestibule's own entry, and with it the loop guard (508 loop_detected).
      if (/^via$/i.test(name)) {
        problems.push(
          `${section}.${id}.headers.${name}: vestibule sends its own Via entry, which finds a ` +
            "request that comes round again; a value here would replace it",
        );
      }
    }
    out.set(id, {
      id,
      kind,
      origin: parsed.origin,
      host: parsed.host,
      headers: Object.entries(entry.headers).map(([k, v]) => [k.toLowerCase(), v] as const),
      cgiSpelledHeaders: Object.keys(entry.headers).some(hasCgiSeparator),
      timeoutMs: entry.timeout_ms,
    });
  }
  return out;
}

/**
 * Refuses a redirect target the client would not get as written: non-ASCII (Deno writes a header
 * character as its Latin-1 byte, which browsers read as UTF-8: `ü` arrived as `%EF%BF%BD`), a
 * scheme without `//` (`https:help.example.com$1` is a path under an https page and another
 * host under an http one), and a `$N` the path regex has no group for (always empty: every path
 * went to the same page).
 */
function checkRedirectLocation(
  location: string,
  path: RegExp | undefined,
  fail: (detail: string) => void,
): void {
  if (/[^\x20-\x7e]/.test(location)) {
    fail(
      "redirect.location: write it in ASCII, non-ASCII path characters percent-encoded as UTF-8 " +
        "(ü as %C3%BC) and an international host name in punycode (xn--…)",
    );
  }
  if (/^[a-z][a-z0-9+.-]*:(?![\\/]{2})/i.test(location)) {
    fail("redirect.location: write // after the scheme (https://host/…), or a path");
  }
  if (path === UNCOMPILED) return; // its own error says what is wrong; its groups are unknown
  // Groups of the regex: the empty string always matches `source|`, with one slot per group.
  const groups = path ? new RegExp(`${path.source}|`).exec("")!.length - 1 : -1;
  for (const [reference, n] of location.matchAll(/\$(\d)/g)) {
    if (Number(n) > groups) {
      fail(
        path
          ? `redirect.location: ${reference} but match.path has ${groups} group${
            groups === 1 ? "" : "s"
          }`
          : `redirect.location: ${reference} needs match.path, whose groups it stands for`,
      );
    }
  }
}

/**
 * Cookie names as request headers hold them ({@linkcode asSentInUtf8}): `préférence`, which
 * browsers send in UTF-8, is compared as "prÃ©fÃ©rence".
 */
function wireNames(names: readonly string[]): ReadonlySet<string> {
  return new Set(names.map((name) => cookieName(asSentInUtf8(name))));
}

function compileRegex(
  source: string,
  field: string,
  fail: (d: string) => void,
  flags = "",
): RegExp {
  try {
    return new RegExp(source, flags);
  } catch (error) {
    fail(
      `invalid regex in ${field}: ${
        (error as Error).message.replace(/^Invalid regular expression: /, "")
      }`,
    );
    return UNCOMPILED;
  }
}

/** What {@linkcode compileRegex} returns for a regex it refused: it matches nothing. */
const UNCOMPILED = /(?!)/;

function compileRegexMap(
  map: Record<string, string>,
  field: string,
  fail: (d: string) => void,
  lowerKeys: boolean,
): Array<readonly [string, RegExp]> {
  return Object.entries(map).map(([key, source]) => {
    if (lowerKeys) refuseNonAscii(source, `${field}.${key}`, fail);
    return [
      lowerKeys ? key.toLowerCase() : key,
      compileRegex(source, `${field}.${key}`, fail),
    ] as const;
  });
}

/**
 * Refuses a non-ASCII character in a header regex: header values reach it one character per
 * octet received (`é` sent in UTF-8 is "Ã©"), so `é` matched only a client that sent Latin-1.
 */
function refuseNonAscii(source: string, field: string, fail: (d: string) => void): void {
  if (!hasNonAscii(source)) return;
  const char = [...source].find(hasNonAscii)!;
  const code = char.codePointAt(0)!;
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(2, "0");
  const utf8 = Array.from(new TextEncoder().encode(char), (b) => `\\x${hex(b)}`).join("");
  // Below U+0100 the character is also one octet, which a client that sends Latin-1 writes.
  const latin1 = code < 0x100
    ? `, or \\x${hex(code)} for the one octet a Latin-1 sender writes`
    : "";
  fail(
    `${field}: header values are matched octet by octet; write U+${hex(code).padStart(4, "0")} ` +
      `"${char}" as octet escapes: ${utf8} as clients send it in UTF-8${latin1} ` +
      `(a range of such characters as a range of octets, e.g. [\\x80-\\xFF])`,
  );
}

function compileMatch(
  input: MatchInput,
  fail: (d: string) => void,
  fromEnvironment: (value: string) => boolean,
): CompiledMatch {
  const match: CompiledMatch = {};
  if (input.methods) {
    match.methods = new Set(input.methods.map((m) => m.toUpperCase()));
    // `GET|POST` (a regex habit), `*` or TRACE: the router refuses such a request before any rule.
    // Quoted as written: one from a `${NAME}` is then shown as the reference, not its value.
    for (const method of new Set(input.methods)) {
      try {
        checkMethod(method.toUpperCase());
      } catch (error) {
        fail(`match.methods: "${method}" never reaches a rule: ${(error as Error).message}`);
      }
    }
  }
  if (input.path !== undefined) {
    // Paths arrive percent-encoded (é is %C3%A9): a regex with a literal non-ASCII character
    // could never match.
    if (/[\u0080-\uffff]/.test(input.path)) {
      fail("match.path: paths are matched percent-encoded, so write non-ASCII characters as %XX");
    }
    // An escape the router normalizes (%7E to ~, %c3 to %C3) would never be seen in a path.
    for (const [escape] of input.path.matchAll(/%[0-9A-Fa-f]{2}/g)) {
      const matched = matchablePath(escape);
      if (matched !== escape) {
        const shown = matched.startsWith("%") ? matched : `"${matched}"`;
        fail(`match.path: paths are matched with ${escape} as ${shown}, so write ${shown}`);
      }
    }
    // What the router matches: a path that starts with /, no query, no runs of /. Read off the
    // text only where that is sound: a regex with alternation, a class or a lookaround may match
    // otherwise (`^(?!.*//)/api/` does; a text check of 9be8538 refused it and was reverted).
    if (plainRegex(input.path) && !fromEnvironment(input.path)) {
      // `^` then a letter, digit, `%`, `~`, `-`, an escaped punctuation mark or `$`, unquantified.
      if (/^\^(?:[\w%~-]|\\[^\w/\s]|\$)(?![?*{])/.test(input.path)) {
        fail("match.path: paths start with /, so ^ must be followed by one");
      }
      if (/(?<!\\)(?:\\\\)*\\\?(?![?*{])/.test(input.path)) {
        fail(
          "match.path: paths are matched without their query, so \\? never matches (see match.query)",
        );
      }
      if (/\/\/(?![?*{])/.test(input.path.replaceAll("\\/", "/"))) {
        fail("match.path: paths are matched with runs of / merged into one");
      }
      const encoded = literalNeverInPath(input.path);
      if (encoded !== undefined) {
        const escape = `%${encoded.charCodeAt(0).toString(16).toUpperCase()}`;
        fail(
          `match.path: paths are matched percent-encoded, so write ${
            encoded === " " ? "a space" : `"${encoded}"`
          } as ${escape}`,
        );
      }
    }
    match.path = compileRegex(input.path, "match.path", fail);
  }
  if (input.host !== undefined) {
    // (An IPv6 literal ends in `:1` too: a colon before the last is no port, unless after `]`.)
    if (
      plainRegex(input.host) && !fromEnvironment(input.host) &&
      (input.host.includes("://") || /(?:^[^:]*|\\\]):(?:\d+|\\d[+*]?)\$?$/.test(input.host))
    ) {
      fail("match.host: hosts are matched without scheme or port");
    }
    // `^::1$` never sees `[::1]`; an unanchored `::1` still matches inside the brackets.
    if (
      plainRegex(input.host) && !fromEnvironment(input.host) &&
      /^\^(?:[0-9a-f]{0,4}:){2}/i.test(input.host)
    ) {
      fail("match.host: an IPv6 host is matched as [addr], so write ^\\[::1\\]$ for ::1");
    }
    // Clients send an international name in punycode, and a raw UTF-8 Host is a 400 `bad_host`.
    if (hasNonAscii(input.host)) {
      fail("match.host: hosts are matched as clients send them, in punycode (xn--…)");
    }
    // Host names are case-insensitive; the router matches them lower-cased.
    match.host = compileRegex(input.host, "match.host", fail, "i");
  }
  if (input.query) match.query = compileRegexMap(input.query, "match.query", fail, false);
  if (input.headers) match.headers = compileRegexMap(input.headers, "match.headers", fail, true);
  if (input.body) {
    const kinds = (["json", "form", "regex"] as const).filter((k) => input.body![k] !== undefined);
    if (kinds.length !== 1) {
      fail(`match.body needs exactly one of json, form or regex, got ${kinds.length}`);
    } else if (input.body.json !== undefined) {
      match.body = { kind: "json", subset: input.body.json };
    } else if (input.body.form !== undefined) {
      match.body = { kind: "form", fields: Object.entries(input.body.form) };
    } else {
      match.body = {
        kind: "regex",
        regex: compileRegex(input.body.regex!, "match.body.regex", fail),
      };
    }
  }
  return match;
}

function compileSuccess(
  input: SuccessInput,
  field: string,
  fail: (d: string) => void,
): SuccessRule {
  const rule: SuccessRule = {};
  if (Array.isArray(input.status)) rule.status = new Set(input.status);
  else if (input.status) rule.status = { class: Number(input.status[0]) };
  // Trimmed as answers' cookie names are read, and as forward_cookies are.
  if (input.set_cookie) {
    rule.setCookie = cookieName(asSentInUtf8(input.set_cookie));
    // Blank, it would check nothing: every answer, a 500 too, would count as a success.
    if (rule.setCookie === "") fail(`${field}.set_cookie needs a cookie name, not only spaces`);
  }
  // An empty map checks nothing: alone, it would count every answer, a 500 too, as a success.
  if (input.headers && Object.keys(input.headers).length > 0) {
    rule.headers = compileRegexMap(input.headers, `${field}.headers`, fail, true);
  }
  if (input.json) {
    const hasEquals = "equals" in input.json;
    if (hasEquals === (input.json.exists !== undefined)) {
      fail(`${field}.json needs exactly one of equals or exists`);
    }
    rule.json = {
      path: input.json.path.split("."),
      equals: input.json.equals,
      hasEquals,
      exists: input.json.exists,
    };
  }
  if (Object.keys(rule).length === 0) {
    fail(`${field} needs at least one of status, set_cookie, headers or json`);
  }
  return rule;
}

/**
 * A character a plain path regex ({@linkcode plainRegex}) requires, written as itself or as an
 * escape (`\ `, `\x20`, `\u0020`), that the URL parser always percent-encodes in a path (space,
 * `"`, `<`, `>`, `` ` ``, `{`, `}`) or cuts off (`#`): no path the router matches holds it. Not
 * when a quantifier makes it optional (`/files/ ?$`). `{2}`, `{1,}` and `{1,3}` are quantifiers;
 * any other `{` is, without the `u` flag, literal text (`/users/{id}`).
 */
function literalNeverInPath(source: string): string | undefined {
  for (let i = 0; i < source.length;) {
    let char: string | undefined = source[i];
    let end = i + 1;
    if (char === "\\") {
      const code = /^\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4}))/.exec(source.slice(i));
      char = code ? String.fromCharCode(parseInt(code[1] ?? code[2], 16)) : source[i + 1];
      end = code ? i + code[0].length : i + 2;
    } else if (char === "{") {
      // A quantifier (`{2}`, `{1,}`, `{1,3}`); otherwise, without the `u` flag, a literal `{`.
      const quantifier = /^\{\d+(?:,\d*)?\}/.exec(source.slice(i));
      if (quantifier) {
        char = undefined;
        end = i + quantifier[0].length;
      }
    }
    if (
      char !== undefined && ' "#<>`{}'.includes(char) &&
      !/^(?:[?*]|\{0[,}])/.test(source.slice(end))
    ) return char;
    i = end;
  }
  return undefined;
}

/** A missing or empty `match` (no field, or only empty maps) matches every request. */
function isCatchAll(match: MatchInput | undefined): boolean {
  if (!match) return true;
  const { methods, path, host, query, headers, body } = match;
  return methods === undefined && path === undefined && host === undefined && body === undefined &&
    Object.keys(query ?? {}).length === 0 && Object.keys(headers ?? {}).length === 0;
}

/**
 * A regex without alternation, character classes or groups: every match contains its literal
 * text (`//`, a leading `^api`), so a check may read that off the text. (`(\?.*)?` is optional.)
 */
function plainRegex(source: string): boolean {
  return !/[|[(]/.test(source.replace(/\\./g, "")); // `\[` is a bracket, no class
}

/** The regex's named groups, as the regex itself has them (not text that looks like one). */
function namedGroups(regex: RegExp): string[] {
  return Object.keys(new RegExp(`${regex.source}|`).exec("")!.groups ?? {});
}

/** A match of only `methods` and `host` (and empty maps): it takes every request of those. */
function onlyMethodsAndHost(match: MatchInput): boolean {
  return match.path === undefined && match.body === undefined &&
    Object.keys(match.query ?? {}).length === 0 && Object.keys(match.headers ?? {}).length === 0;
}

/**
 * Whether a rule of `broad`'s match ({@linkcode onlyMethodsAndHost}) takes every request a later
 * rule of `later`'s match would: its methods include all of the later's, and its host, if any, is
 * the later's own.
 */
function takesEvery(broad: MatchInput, later: MatchInput): boolean {
  const upper = (methods: string[]) => methods.map((m) => m.toUpperCase());
  if (broad.methods) {
    if (!later.methods) return false;
    const taken = new Set(upper(broad.methods));
    if (!upper(later.methods).every((m) => taken.has(m))) return false;
  }
  return broad.host === undefined || broad.host === later.host;
}
