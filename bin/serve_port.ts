/**
 * @module `deno task serve`'s check before `deno serve` starts: `PORT` is a port number that can be
 * listened on, else one line naming it and exit 1, as `deno task start` answers. Unchecked, `deno
 * serve` read an empty PORT's `serve.ts` as the port, and printed a stack trace for a taken one.
 */
import { listenPort, listenRefusal } from "../lib/listen_port.ts";

const port = listenPort(Deno.env.get("PORT"));
if (typeof port !== "number") {
  console.error(`vestibule: ${port.error}`);
  Deno.exit(1);
}
try {
  // Where `deno serve` listens by default.
  Deno.listen({ hostname: "0.0.0.0", port }).close();
} catch (error) {
  const refusal = listenRefusal(port, error);
  if (refusal === undefined) throw error;
  console.error(refusal);
  Deno.exit(1);
}
