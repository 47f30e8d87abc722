/**
 * @module `deno task serve`'s check before `deno serve` starts: `PORT` is a port number that can be
 * listened on at `VESTIBULE_HOST`, and `DENO_JOBS` a number of workers, else one line naming it and
 * exit 1, as `deno task start` answers. Unchecked, `deno serve` read an empty PORT's `serve.ts` as
 * the port, and printed a stack trace for a taken one.
 */
import { listenHost, listenPort, listenRefusal, orExit, serveJobs } from "../lib/listen_port.ts";

const port = orExit(listenPort(Deno.env.get("PORT")));
const hostname = orExit(listenHost(Deno.env.get("VESTIBULE_HOST")));
orExit(serveJobs(Deno.env.get("DENO_JOBS")));
try {
  Deno.listen({ hostname, port }).close();
} catch (error) {
  const refusal = listenRefusal(port, error, hostname);
  if (refusal === undefined) throw error;
  console.error(refusal);
  Deno.exit(1);
}
