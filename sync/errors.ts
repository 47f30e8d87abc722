/** @module The errors a caller catches to tell a refused or stopped table sync from a failed one. */

/**
 * A sync that was refused before writing anything: schema mismatch, a primary key that differs
 * from the config, or deletes past `max_delete_ratio`. Retrying will not help.
 */
export class SyncRefusedError extends Error {
  override name = "SyncRefusedError";
}

/** A sync a signal stopped before its destination's transaction began: nothing was written. */
export class SyncStoppedError extends Error {
  override name = "SyncStoppedError";
}

/**
 * An error's message with the columns of PostgreSQL's key DETAIL, where it has one: a unique or
 * foreign-key violation names the constraint, its DETAIL the columns and the row's values
 * (`Key (code)=(MATH-1) already exists.`). The values stay out, as row data stays out of every
 * log line and report: a unique column may hold an email or a token. Other DETAILs (a CHECK's
 * `Failing row contains (…)`) are the row itself and are left out whole.
 */
export function describeError(error: Error): string {
  const detail = (error as { detail?: unknown }).detail;
  const key = typeof detail === "string" ? KEY_DETAIL.exec(detail) : null;
  return key ? `${error.message}: ${key[1]}=(…)${key[2]}` : error.message;
}

/** PostgreSQL's DETAIL of a unique or foreign-key violation: `Key (cols)=(values) <what>.` */
const KEY_DETAIL =
  /^(Key \([^()]*\))=\(.*\)( already exists\.| is not present in table "[^"]*"\.| is still referenced from table "[^"]*"\.)$/s;
