/**
 * @module `deno task dev`: the whole local stack — two stand-in regional monoliths (AU, US), the
 * global website, and vestibule in front of them with the top-level `rules.json`.
 */
import { listenPort } from "../lib/listen_port.ts";
import { listeningPort, passOn } from "./listening.ts";
import { startMonolith } from "./monolith.ts";
import { startWebsite } from "./website.ts";

const asked = listenPort(Deno.env.get("PORT"));
if (typeof asked !== "number") {
  console.error(`vestibule dev stack: ${asked.error}`);
  Deno.exit(1);
}
// Trimmed as vestibule reads it: a blank one (a .env template) turned the metrics off.
const METRICS_TOKEN = Deno.env.get("VESTIBULE_METRICS_TOKEN")?.trim() || "dev-only-metrics-token";
const taken = new Set<string>();
// The monoliths share it to sign and check staff switch links; a new one every run.
const switchSecret = crypto.randomUUID();
const regions = ["au", "us"];
const au = startMonolith({
  region: "au",
  users: { olivia: { password: "kangaroo", name: "Olivia (AU)" } },
  takenUsernames: taken,
  switchSecret,
  regions,
});
const us = startMonolith({
  region: "us",
  users: {
    james: { password: "eagle", name: "James (US)" },
    sam: { password: "staff", name: "Sam (US staff)", staff: true },
  },
  takenUsernames: taken,
  switchSecret,
  regions,
});
const website = startWebsite();

// vestibule runs as its own process, exactly as `deno task start` would run it in production, with
// the stack's own rules and none of the shell's vestibule settings (a VESTIBULE_RULES exported for
// a deploy routed the stack by another file, DENO_DEPLOYMENT_ID made it claim https), nor its
// proxy: `fetch` follows HTTP_PROXY, and behind a corporate proxy (how npx got Deno) every call to
// the loopback stand-ins went to it, a 502 on every page.
const inherited = Object.entries(Deno.env.toObject()).filter(([name]) =>
  !name.startsWith("VESTIBULE_") && name !== "DENO_DEPLOYMENT_ID" &&
  !/^(?:https?|all)_proxy$/i.test(name)
);
const env = {
  ...Object.fromEntries(inherited),
  // On this machine only, unless asked: the demo's passwords and metrics token are well known.
  // Blank (a .env template) is unset, as for the metrics token.
  VESTIBULE_HOST: Deno.env.get("VESTIBULE_HOST")?.trim() || "127.0.0.1",
  VESTIBULE_RULES: "./rules.json",
  AU_ORIGIN: au.url,
  US_ORIGIN: us.url,
  WEBSITE_ORIGIN: website.url,
  AU_SECRET: "dev-only-au-secret",
  // `PORT=0` (any free port): vestibule takes one itself and says which (below). A port picked
  // here and freed for it could go to a stand-in first, or to anything else meanwhile.
  PORT: String(asked),
  VESTIBULE_METRICS_TOKEN: METRICS_TOKEN,
};
let closing: Promise<unknown> | undefined;
const closeAll = () => closing ??= Promise.all([au.close(), us.close(), website.close()]);
// Listening before vestibule starts: a stop during start-up (a test that reads the banner and
// stops at once, an early Ctrl-C) ran Deno's default exit and left vestibule running, orphaned.
let stopping = false;
async function shutdown(code = 0) {
  stopping = true;
  try {
    edge.kill("SIGTERM");
  } catch {
    // already gone
  }
  await edge.status;
  await closeAll();
  Deno.exit(code);
}
Deno.addSignalListener("SIGINT", () => shutdown());
Deno.addSignalListener("SIGTERM", () => shutdown());
const edge = new Deno.Command(Deno.execPath(), {
  args: ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-write", "main.ts"],
  cwd: new URL("..", import.meta.url).pathname,
  env,
  clearEnv: true,
  stdin: "null",
  stderr: "piped",
}).spawn();
const edgeStderr = passOn(edge.stderr);

// The links work once vestibule listens, which `Deno.serve` says on stderr, with the port; a
// vestibule that cannot listen (PORT taken) says why instead, and the banner would only mislead.
const listening = await edgeStderr.line;
const PORT = listening === undefined ? undefined : asked || listeningPort(listening);
if (listening !== undefined && PORT === undefined) {
  // Deno wrote its line in a shape this stack does not know: no banner beats one with wrong links.
  console.error(`vestibule dev stack: no port in vestibule's "${listening}"`);
  await shutdown(1);
}
if (PORT !== undefined) {
  console.log(`
vestibule local stack
  open      http://localhost:${PORT}/            (anonymous: lands on the assumed region, US by default)
  about     http://localhost:${PORT}/about       (global website)
  log in    http://localhost:${PORT}/accounts/login/   olivia / kangaroo (AU) or james / eagle (US)
  staff     log in as sam / staff (US): the home page has a signed "Switch to region AU" button
  GraphQL   http://localhost:${PORT}/graphql     (Signup and JoinClass, broadcast: class codes AU-1 / US-1 pick the region)
  as AU     curl -H 'cf-ipcountry: AU' http://localhost:${PORT}/
  metrics   curl -H 'Authorization: Bearer ${
    METRICS_TOKEN.split(",")[0].trim()
  }' http://localhost:${PORT}/_vestibule/metrics
  upstreams AU ${au.url}  US ${us.url}  website ${website.url}
Ctrl-C stops everything.
`);
}

const status = await edge.status;
await edgeStderr.done; // vestibule's last words before the stack's own
// Ctrl-C in a terminal signals vestibule too, and it may be gone before `shutdown` runs: that is
// a stop, not a crash.
const stopped = stopping || status.success || status.signal === "SIGINT" ||
  status.signal === "SIGTERM" || status.code === 130 || status.code === 143;
if (stopped) {
  await closeAll();
  Deno.exit(0);
} else if (!status.success) {
  console.error(`vestibule exited with code ${status.code}`);
  await closeAll();
  Deno.exit(status.code || 1);
}
