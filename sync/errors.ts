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
