/**
 * @module The zod schema of route-table test files (`rules.test.json`): the one source of truth
 * for their validation and `rules.test.schema.json`.
 */
import { z } from "zod";
import { headerRecord } from "./rules_schema.ts";

const typedHeaderValue = z.string().regex(
  /^[^\r\n\0]*$/,
  "a header value must not contain CR, LF or NUL",
);

/** Why a region was chosen, as explain reports it. */
export const REASONS = [
  "pin header",
  "pin cookie",
  "region_from",
  "geo header",
  "geo ip",
  "default",
  "broadcast",
] as const;

const requestSchema = z.strictObject({
  method: z.string().min(1),
  url: z.string().min(1).describe(
    "Absolute URL, or a path (resolved against https://localhost; a Host header still counts)",
  ),
  // Checked here: `Headers` would refuse them later with a message that quotes the value. Sent in
  // UTF-8, as curl sends what was typed (headersAsSent), so only what no header holds is refused.
  headers: headerRecord(typedHeaderValue).optional(),
  body: z.union([z.string(), z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional()
    .describe("Text, or a JSON object or array sent as its JSON encoding"),
  client_ip: z.string().min(1).optional().describe(
    "The socket address vestibule sees (default 192.0.2.1)",
  ),
});

const expectSchema = z.strictObject({
  rule: z.string().min(1).describe("Name of the rule that must match"),
  type: z.enum(["global", "regional", "broadcast"]),
  region: z.string().min(1).optional().describe("Regional rules: the chosen region"),
  upstream: z.string().min(1).optional().describe("Global proxy rules: the upstream's name"),
  reason: z.enum(REASONS).optional().describe("Why this region"),
  location: z.string().min(1).optional().describe("Global redirect rules: the Location"),
  status: z.number().int().min(300).max(399).optional().describe(
    "Global redirect rules: the redirect's status (a 301 browsers keep, a 302 they do not)",
  ),
  refused: z.string().min(1).optional().describe(
    "The error code the router answers with itself after the rule matched (redirect_refused, body_too_large…); without it such a case fails",
  ),
});

/** One route-table test: a request and what the router must decide for it. */
export const routeCaseSchema = z.strictObject({
  name: z.string().min(1).optional().describe("Shown when the case fails"),
  request: requestSchema,
  expect: expectSchema.describe("Only the fields given are compared"),
});

/** A route-table test file. */
export const routeCasesFileSchema = z.strictObject({
  $schema: z.string().optional(),
  cases: z.array(routeCaseSchema).min(1),
});

/** One route-table test as written. */
export type RouteCase = z.infer<typeof routeCaseSchema>;

/** The JSON Schema text for route-table test files. */
export function routeCasesJsonSchema(): string {
  const schema = z.toJSONSchema(routeCasesFileSchema, { io: "input" });
  return JSON.stringify(schema, null, 2) + "\n";
}
