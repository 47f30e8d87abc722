/**
 * @module The statuses a `redirect` may answer with, for the schema and the compiler alike; its
 * own module so that the compiler, which serves, never loads the schema's zod.
 */

/** The statuses a `redirect` may answer with. */
export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
