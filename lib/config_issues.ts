/** @module How a config file's schema problems are told: the field's path and what is wrong. */
import type { z } from "zod";
import { HTTP_TOKEN } from "./header_list.ts";

/**
 * The dotted path of a problem. A key under `headers` that is no header name may be a pasted
 * `Authorization: Bearer …` line, and check-rules runs in CI logs: such a key is never shown.
 */
export function issueField(path: readonly PropertyKey[]): string {
  return path.map((key, i) =>
    i > 0 && path[i - 1] === "headers" && !HTTP_TOKEN.test(String(key))
      ? "(a name that is not a header token)"
      : String(key)
  ).join(".");
}

/**
 * zod reports a bad record key as "Invalid key in record", and a value that fits no form of a
 * union as "Invalid input", with the reasons one level down: say those instead.
 */
export function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_key" && issue.issues[0]) return issueMessage(issue.issues[0]);
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return issue.message;
  // The forms whose type fits ("2XX" is a string, not a list) say what is wrong inside them.
  const fitting = issue.errors.filter((errors) =>
    !errors.some((inner) => inner.code === "invalid_type" && inner.path.length === 0)
  );
  return (fitting.length > 0 ? fitting : issue.errors).map((errors) =>
    errors.map((inner) => {
      const field = issueField(inner.path);
      return field ? `${field}: ${issueMessage(inner)}` : issueMessage(inner);
    }).join("; ")
  ).join(", or ");
}
