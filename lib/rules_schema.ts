/** @module The zod schema of `rules.json`: the one source of truth for validation and `rules.schema.json`. */
import { z } from "zod";
import { HTTP_TOKEN } from "./header_list.ts";
import { REDIRECT_STATUSES } from "./redirect_statuses.ts";

const regexString = z.string().min(1).describe(
  "A JavaScript regular expression (anchor it yourself)",
);
/** RFC 9110 §5.6.2 token: what a header name may be. */
const headerName = z.string().regex(HTTP_TOKEN, "not a valid header name");
/**
 * Header name → value, each name once in any letter case: `{"X-Secret": "a", "x-secret": "b"}`
 * would send `a, b` (or test one header twice), and JSON's own duplicate check is case-sensitive.
 */
export function headerRecord<V extends z.ZodType<string>>(value: V) {
  return z.record(headerName, value).superRefine((record, ctx) => {
    const seen = new Map<string, string>();
    for (const name of Object.keys(record)) {
      const first = seen.get(name.toLowerCase());
      if (first === undefined) seen.set(name.toLowerCase(), name);
      else {
        ctx.addIssue({
          code: "custom",
          path: [name],
          message: `header "${name}" is also written as "${first}": header names ignore case`,
        });
      }
    }
  });
}
/** Header → regex; a name `Headers` refuses would otherwise never match, and crash explain. */
const headerRegexMap = headerRecord(regexString);
/**
 * Checked once here, so a bad value (say, a secret with a trailing newline) fails start-up, not
 * each request: `fetch` and `Response` refuse line breaks, NUL and anything above U+00FF.
 */
export const headerValue = z.string().regex(
  // Listed, not excluded: a JSON schema validator reads the pattern with the `u` flag, where an
  // excluded range \u0100-\uffff let an emoji (one code point above it) through.
  // deno-lint-ignore no-control-regex -- the allowed characters include control ones (HTAB)
  /^[\u0001-\u0009\u000b\u000c\u000e-\u00ff]*$/,
  "a header value must not contain CR, LF, NUL or characters above U+00FF (percent-encode them)",
);

/** A timeout: `setTimeout` takes at most 2^31 − 1 ms and fires at once for anything longer. */
const milliseconds = z.number().int().positive().max(2 ** 31 - 1);

/** An upstream HTTP origin: a region's monolith, a global upstream or an OCAP target. */
export const originSchema = z.strictObject({
  origin: z.string().describe("Absolute http(s) URL of the upstream, without a path"),
  headers: headerRecord(headerValue).default({}).describe(
    "Headers added to every request sent to this origin (e.g. a shared secret)",
  ),
  timeout_ms: milliseconds.default(30_000).describe(
    "How long to wait for the response headers before answering 504 upstream_timeout",
  ),
});

/**
 * JSON Schema only (`.meta()` leaves parsing alone): what `compile_rules.ts` refuses with the
 * rule's name, said again in `rules.schema.json` so an editor marks it while it is typed.
 */
const exactlyOneOf = (...fields: string[]) => ({ oneOf: fields.map((f) => ({ required: [f] })) });

/**
 * A JSON value to compare with a body's: `JSON.parse` rounds an integer beyond 2^53 − 1, so
 * `1234567890123456789` would also match `…800`, another account to Python, Ruby, Go and PHP.
 */
const exactJson = <T extends z.ZodType>(schema: T) =>
  schema.superRefine((value, ctx) => {
    const walk = (node: unknown, path: (string | number)[]): void => {
      if (typeof node === "number" && Number.isInteger(node) && !Number.isSafeInteger(node)) {
        ctx.addIssue({
          code: "custom",
          path,
          message: "an integer beyond 2^53 - 1, which JavaScript reads rounded, so it would " +
            "match other integers: compare a string, or use a regex matcher",
        });
      } else if (Array.isArray(node)) node.forEach((item, i) => walk(item, [...path, i]));
      else if (node !== null && typeof node === "object") {
        for (const [key, item] of Object.entries(node)) walk(item, [...path, key]);
      }
    };
    walk(value, []);
  });

const bodyMatchSchema = z.strictObject({
  json: exactJson(z.record(z.string(), z.unknown())).optional().describe(
    "The parsed JSON body contains this subset",
  ),
  form: z.record(z.string(), z.string()).optional().describe(
    "The urlencoded or multipart form has these fields with these values (every copy of a repeated field)",
  ),
  regex: regexString.optional().describe(
    "A regular expression tested on the body text (in the Content-Type charset, else UTF-8)",
  ),
}).meta(exactlyOneOf("json", "form", "regex"));

/** What a request must look like for a rule to apply; every field present must hold. */
export const matchSchema = z.strictObject({
  methods: z.array(z.string().min(1)).min(1).optional(),
  path: regexString.optional(),
  host: regexString.optional(),
  query: z.record(z.string().min(1), regexString).optional(),
  headers: headerRegexMap.optional(),
  body: bodyMatchSchema.optional(),
});

/**
 * One message for both forms: `"status": 302`, natural after `redirect.status`, was told only the
 * classes.
 */
const STATUS_FORMS =
  'expected a list of status codes such as [302], or a class: "1xx", "2xx", "3xx", "4xx" or "5xx"';
const statusClass = z.enum(["1xx", "2xx", "3xx", "4xx", "5xx"], { error: STATUS_FORMS });

/** When an upstream answer counts as a success (broadcast owner discovery, `pin_on`). */
export const successSchema = z.strictObject({
  status: z.union([z.array(z.number().int().min(100).max(599)).min(1), statusClass], {
    error: STATUS_FORMS,
  }).optional(),
  set_cookie: z.string().min(1).optional().describe(
    "The response sets this cookie with a non-empty value and no past expiry",
  ),
  headers: headerRegexMap.optional(),
  json: z.strictObject({
    path: z.string().min(1).describe('Dotted path into the JSON body, e.g. "data.signup.ok"'),
    equals: exactJson(z.unknown()).optional(),
    exists: z.boolean().optional(),
  }).meta(exactlyOneOf("equals", "exists")).optional(),
}).meta({ minProperties: 1 });

/**
 * A rule or upstream name: printable ASCII, no space at either end. Names are sent in the
 * `X-Vestibule-Rule` debug header (which refuses anything else) and label logs and metrics.
 */
const printableName = z.string().regex(
  /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/,
  "a name must be printable ASCII without a space at either end",
);

const ruleBase = {
  name: printableName.describe("Unique name; it appears in logs, metrics and errors"),
  match: matchSchema.optional().describe("Absent: the rule matches every request (catch-all)"),
};

/** A rule's own upstream timeout, for routes slower than the rest of their origin (uploads). */
const ruleTimeout = milliseconds.optional().describe(
  "Overrides the origin's timeout_ms for the requests this rule sends",
);

const globalRuleSchema = z.strictObject({
  ...ruleBase,
  type: z.literal("global"),
  upstream: z.string().optional(),
  redirect: z.strictObject({
    location: headerValue.min(1).describe("Target; $1… are the path regex groups"),
    status: z.number().int().default(302).meta({ enum: [...REDIRECT_STATUSES] }),
  }).optional(),
  forward_cookies: z.array(z.string().min(1)).optional(),
  timeout_ms: ruleTimeout,
}).meta(exactlyOneOf("upstream", "redirect"));

const regionalRuleSchema = z.strictObject({
  ...ruleBase,
  type: z.literal("regional"),
  region_from: z.union([
    z.strictObject({ path_group: z.string().min(1) }),
    z.strictObject({ query: z.string().min(1) }),
  ]).optional().describe("Take the region from the request instead of the pin (staff switching)"),
  pin_on: successSchema.optional().describe(
    "Pin the browser to the region when the answer matches",
  ),
  timeout_ms: ruleTimeout,
});

const broadcastRuleSchema = z.strictObject({
  ...ruleBase,
  type: z.literal("broadcast"),
  success: successSchema,
  allow_multiple_success: z.boolean().default(false),
  prefer_failure: successSchema.optional().describe(
    "With no success, a failure matching this beats other failures (e.g. the owner's 401 wrong password)",
  ),
  timeout_ms: ruleTimeout,
  forward_cookies: z.array(z.string().min(1)).optional(),
});

/** One entry of the ordered rule table. */
export const ruleSchema = z.discriminatedUnion("type", [
  globalRuleSchema,
  regionalRuleSchema,
  broadcastRuleSchema,
]);

/**
 * How long OCAP keeps an answer: short-lived by design (a one-time code is redeemed within
 * minutes), and at most a day. Deno KV refuses an `expireIn` past about 8.6e12 s, so a larger
 * "keep it" went unsaved and the next identical caller redeemed the code again.
 */
const ttlSeconds = z.number().positive().max(86_400);

/** The outgoing caching proxy section; absent means OCAP is not mounted. */
export const ocapSchema = z.strictObject({
  // Segments of unreserved characters, none starting with `.` (so no `.` or `..`): the mount is
  // compared with the path as routed, in which escapes of those are decoded and dot segments
  // resolved.
  path: z.string().regex(
    /^(?:\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$/,
    "a path of /-separated segments of letters, digits and -._~, none starting with ., e.g. /_ocap",
  ).default("/_ocap").describe("Where OCAP is mounted; not under /_vestibule/"),
  // A header value loses spaces at either end and carries no character above U+00FF, and a
  // non-ASCII one reaches the server in whatever encoding the caller's client chose: such a key
  // made every call a 401 with nothing saying why.
  key: z.string().regex(/^[\x21-\x7e]{16,}$/, "16 or more printable ASCII characters, no spaces")
    .describe("Callers send it in the Ocap-Key header"),
  ttl_seconds: ttlSeconds.default(30),
  targets: z.record(
    z.string().regex(/^[a-z0-9][a-z0-9_-]*$/),
    z.strictObject({
      origin: z.string(),
      ttl_seconds: ttlSeconds.optional(),
      timeout_ms: milliseconds.default(10_000),
    }),
  ),
});

/** The whole rules file. Only `regions`, `default_region` and `rules` are required. */
export const rulesFileSchema = z.strictObject({
  $schema: z.string().optional(),
  regions: z.record(z.string().regex(/^[a-z][a-z0-9-]{0,15}$/), originSchema),
  upstreams: z.record(printableName, originSchema).default({}),
  default_region: z.string(),
  geo: z.strictObject({
    header: headerName.optional().describe("Trusted country header set by a CDN in front"),
    countries: z.record(z.string().regex(/^[A-Z]{2}$/), z.string()).default({}),
    ip_lookup: z.boolean().default(false),
  }).default({ countries: {}, ip_lookup: false }),
  pin: z.strictObject({
    cookie: z.string().regex(HTTP_TOKEN).default("__Host-vestibule-region"),
    header: headerName.default("x-vestibule-region"),
    max_age_seconds: z.number().int().positive().max(34_560_000).default(31_536_000).describe(
      "Browsers cap cookie lifetimes at 400 days (RFC 6265bis)",
    ),
    secure: z.boolean().default(true),
    same_site: z.enum(["lax", "none"]).default("lax").describe(
      "The pin cookie's SameSite: none (with secure) lets cross-site POSTs (SAML, form_post) carry it",
    ),
  }).default({
    cookie: "__Host-vestibule-region",
    header: "x-vestibule-region",
    max_age_seconds: 31_536_000,
    secure: true,
    same_site: "lax",
  }),
  forward_cookies: z.array(z.string().min(1)).default([]),
  trusted_proxy_hops: z.number().int().min(0).default(0).describe(
    "Proxies in front of vestibule whose X-Forwarded-For, -Host and -Proto entries are trusted",
  ),
  body_limit_bytes: z.number().int().positive().default(1_048_576),
  body_timeout_ms: milliseconds.default(30_000).describe(
    "How long a request body that a rule or OCAP reads (body matchers, broadcast, region_from.query, OCAP) may take to arrive (408)",
  ),
  debug_headers: z.boolean().default(false).describe(
    "Add X-Vestibule-Rule, X-Vestibule-Region and X-Request-Id to responses (off in production)",
  ),
  server_timing: z.boolean().default(false),
  via_pseudonym: z.string().regex(HTTP_TOKEN, "not a token (letters, digits, !#$%&'*+-.^_`|~)")
    .default("vestibule").describe(
      "vestibule's name in the Via entry it adds and looks for to refuse loops (508); give each vestibule of a deliberate chain its own",
    ),
  paths: z.strictObject({
    allow_encoded_slashes: z.boolean().default(false).describe(
      "Route paths holding %2F or %5C (else 400 bad_path): only for apps that keep them apart from /",
    ),
    allow_semicolons: z.boolean().default(false).describe(
      "Route paths holding ';' (else 400 bad_path): only for apps that do not strip ;parameters",
    ),
  }).default({ allow_encoded_slashes: false, allow_semicolons: false }),
  ocap: ocapSchema.optional(),
  rules: z.array(ruleSchema).min(1),
});

/** The rules file as written, after defaults. */
export type RulesFile = z.infer<typeof rulesFileSchema>;
/** One rule as written, after defaults. */
export type RuleInput = z.infer<typeof ruleSchema>;
/** A success rule as written. */
export type SuccessInput = z.infer<typeof successSchema>;
/** A match block as written. */
export type MatchInput = z.infer<typeof matchSchema>;
