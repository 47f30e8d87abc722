/**
 * @module Entry for `deno serve --parallel` (`deno task serve`): the same app as `main.ts`, but
 * `deno serve` does the listening, once per worker, so `main.ts` must not be the main module.
 */
import { app } from "./main.ts";

export default { fetch: app.fetch } satisfies Deno.ServeDefaultExport;
