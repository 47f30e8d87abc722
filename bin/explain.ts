/**
 * @module `deno task explain -- <METHOD> <URL> [options]`: shows how vestibule would route a
 * request, without contacting any upstream. See docs/operations.md, "Explain a request".
 */
import { explainRequest } from "../lib/explain.ts";
import { formatExplanation } from "../lib/explain_text.ts";
import { loadRules } from "../lib/load_rules.ts";
import { HTTP_TOKEN, trimOws } from "../lib/header_list.ts";
import { asSentInUtf8 } from "../lib/wire_text.ts";
import { parseCommandLine, RULES_ENV_OPTIONS } from "./_command_line.ts";
import { missingHint, type RulesEnv, rulesEnv } from "./_rules_env.ts";

const USAGE = `Usage: deno task explain -- <METHOD> <URL> [options]

  -H, --header 'Name: value'  A request header (repeatable)
  --body TEXT                 The request body
  --rules FILE                Rules file (default: $VESTIBULE_RULES or ./rules.json)
  --client-ip IP              The client's socket address (default: 192.0.2.1)
  --env-file FILE             Values for \${NAME} references missing from the environment
  --placeholder-env           Use a placeholder for variables still missing: http://NAME.invalid
                              in an origin or redirect location, PLACEHOLDER_VALUE_OF_NAME elsewhere
  --json                      Print JSON instead of text
`;

/** Runs the CLI; returns the exit code (0 explained, 1 rules or request error, 2 usage error). */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, {
    ...RULES_ENV_OPTIONS,
    header: { type: "string", short: "H", multiple: true, default: [] },
    body: { type: "string" },
    rules: { type: "string" },
    "client-ip": { type: "string" },
    json: { type: "boolean", default: false },
  }, USAGE);
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 2) {
    const got = positionals.length === 1 ? "1 argument" : `${positionals.length} arguments`;
    console.error(`Expected a method and a URL, got ${got}\n\n${USAGE}`);
    return 2;
  }
  const headers: Array<[string, string]> = [];
  for (const line of values.header) {
    const colon = line.indexOf(":");
    // Not trimmed: Deno.serve answers 400 to a name with a space or tab before its colon (RFC 9112
    // §5.1 says a server MUST) or a line starting with one, before any rule; explain must not
    // predict a route for a request the edge refuses.
    const name = line.slice(0, Math.max(colon, 0));
    // Sent as curl sends typed text: in UTF-8, one character per octet as the router reads it.
    // Only what curl and Deno.serve trim (HTTP's OWS): `trim()` also took U+00A0 and U+3000,
    // which curl sends and the router keeps.
    const value = asSentInUtf8(trimOws(line.slice(colon + 1)));
    if (colon <= 0 || !HTTP_TOKEN.test(name) || !headerValueOk(name, value)) {
      // This line ends up in CI logs, and the rest of the line may be a cookie or a token
      // (`-H 'Cookie sessionid=…'`, `-H 'Authorization Basic a:b'`): quoted up to the first
      // character no header name holds, and not at all without a colon, where the whole line may
      // be a token (`-H "$GITHUB_TOKEN"`). Deno's own message would quote the value.
      const start = colon <= 0
        ? ""
        : ` starting "${line.trimStart().split(/[^!#$%&'*+.^_`|~0-9A-Za-z-]/, 1)[0].slice(0, 64)}"`;
      console.error(
        `Invalid header${start}: expected "Name: value", a name without spaces and a value without CR, LF or NUL`,
      );
      return 2;
    }
    headers.push([name, value]);
  }

  const rulesPath = values.rules ?? Deno.env.get("VESTIBULE_RULES") ?? "./rules.json";
  let env: RulesEnv | undefined;
  try {
    env = await rulesEnv({
      envFile: values["env-file"],
      placeholder: values["placeholder-env"],
    });
    const config = await loadRules(rulesPath, env.lookup);
    const [method, url] = positionals;
    const explanation = await explainRequest({
      method,
      url,
      headers,
      body: values.body,
      clientIp: values["client-ip"],
    }, config);
    if (values.json) {
      const output = env.placeholders.length > 0
        ? { ...explanation, placeholders: env.placeholders }
        : explanation;
      console.log(JSON.stringify(output, null, 2));
    } else {
      let text = formatExplanation(explanation);
      if (env.placeholders.length > 0) {
        text += `Placeholders used for: ${env.placeholders.join(", ")}\n`;
      }
      await Deno.stdout.write(new TextEncoder().encode(text));
    }
    return 0;
  } catch (error) {
    console.error((error as Error).message + missingHint(env));
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));

/** Whether `fetch`'s `Headers` takes the value (no CR, LF or NUL). */
function headerValueOk(name: string, value: string): boolean {
  try {
    new Headers([[name, value]]);
    return true;
  } catch {
    return false;
  }
}
