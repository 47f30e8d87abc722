/** @module Substitutes `${NAME}` environment references in the string values of a parsed rules file. */
import { issueField } from "./config_issues.ts";

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
/** A regex character class, escapes inside it included: a `$` there is a plain character. */
const REGEX_CLASS = /\[(?:\\.|[^\]\\])*\]/g;
/** The sections of a rule whose strings are regexes (and literal values beside them). */
const REGEX_SECTIONS: ReadonlySet<string> = new Set([
  "match",
  "success",
  "pin_on",
  "prefer_failure",
]);

/** A shell-style `$NAME` where a shell reference is written: the start, or after a separator. */
const SHELL_REF = /(?<=^|[\s/:=@"'(,;])\$([A-Z_]*[A-Z][A-Z0-9_]*)(?![A-Za-z0-9_])/;
/** In a regex, escapes and classes cut out: anywhere (`$` then a letter matches nothing). */
const IN_REGEX_REF = /\$([A-Z_]*[A-Z][A-Z0-9_]*)(?![A-Za-z0-9_])/;
/** A regex escape, `\\` included: `\$A` is a literal `$`, `\\$A` a dead anchor. */
const REGEX_ESCAPE = /\\[\s\S]/g;

/**
 * Whether the string at `path` is compiled as a regex: under a rule's `match` all but `methods`
 * and a `json` or `form` body matcher's values; under `success`, `pin_on` and `prefer_failure`
 * only `headers` (`set_cookie` and `json` are compared as written).
 */
function isRegexField(path: readonly PropertyKey[]): boolean {
  const at = path.findIndex((key) => typeof key === "string" && REGEX_SECTIONS.has(key));
  if (at === -1) return false;
  const [field, inner] = path.slice(at + 1);
  if (path[at] !== "match") return field === "headers";
  return field !== "methods" && (field !== "body" || inner === "regex");
}

/**
 * Reads one environment variable; `Deno.env.get` in production, a plain object in tests. `at`
 * is where the rules file uses it (`check-rules --placeholder-env` makes up a value to suit).
 */
export type EnvLookup = (name: string, at?: readonly PropertyKey[]) => string | undefined;

/**
 * Returns a copy of `value` with every `${NAME}` in its strings replaced by the variable's value.
 *
 * A missing variable is a start-up error naming the variable and where it is used, because an
 * empty origin or secret would otherwise fail much later and far from its cause; so is one set
 * but empty (docker compose passes an unset host variable as "", and `^${INTERNAL_KEY}$` became
 * `^$`, which a request with an empty header matched), a `${` that does not start a well-formed
 * reference, and a reference in a key, which is not substituted.
 */
export function substituteEnv(
  value: unknown,
  env: EnvLookup,
  /** Filled with each string that held a reference, substituted → as written, for errors. */
  written: Map<string, string> = new Map(),
  path: readonly PropertyKey[] = [],
): unknown {
  if (typeof value === "string") {
    // `${AU-SECRET}` or `${ AU_SECRET }` would otherwise pass as literal text, a typo sent to the
    // origin as its secret.
    const stray = value.replace(ENV_REF, "").match(/\$\{[^}]*\}?/);
    if (stray) {
      throw new ReferenceError(
        `Cannot read rules: "${stray[0]}" at ${where(path)} is not an environment reference ` +
          "(write ${NAME}, with letters, digits and _)",
      );
    }
    // `$AU_SECRET`, as a shell or docker compose writes a reference, is not one here. In a regex
    // `$` followed by a letter never matches, but for a literal `\$` or one in a class (`[$A-Z]`).
    // A whole upper-case name only, where a shell reference is written (the value's start, after
    // a space, `/`, `:`, `=`, `@`, a quote, `(`, `,` or `;`): `Zq8$KTm3…`, `ab$XY9-…` or
    // `Zq8[x]$KTM3…`, generated secrets, are no reference to refuse (and not to print), and
    // `$ApiKey` must not be answered with `${A}`. References, and classes in the fields that hold
    // regexes, are cut out as a space: `id${AU_ID}$AU_TOKEN` and `^/api[/]$API_SUFFIX` are typos.
    // In a regex field any unescaped `$NAME` outside a class is dead (`^$INTERNAL_KEY$`, `a|$B`).
    let scanned = value.replace(ENV_REF, " ");
    const regex = isRegexField(path);
    if (regex) scanned = scanned.replace(REGEX_ESCAPE, " ").replace(REGEX_CLASS, " ");
    const bare = scanned.match(regex ? IN_REGEX_REF : SHELL_REF);
    if (bare) {
      throw new ReferenceError(
        `Cannot read rules: "${bare[0]}" at ${where(path)} is not an environment reference ` +
          `(write \${${bare[1]}})`,
      );
    }
    if (!value.includes("${")) return value;
    const substituted = value.replace(ENV_REF, (_, name: string) => {
      const found = env(name, path);
      if (found === undefined || found === "") {
        throw new ReferenceError(
          `Cannot read rules: environment variable "${name}" is ${
            found === undefined ? "not set" : "empty"
          } (used at ${where(path)})`,
        );
      }
      return found;
    });
    written.set(substituted, value);
    return substituted;
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => substituteEnv(item, env, written, [...path, i]));
  }
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (key.includes("${")) {
        throw new ReferenceError(
          `Cannot read rules: the key "${key}" at ${
            where(path)
          } holds a reference; references are read in values only`,
        );
      }
      out[key] = substituteEnv(item, env, written, [...path, key]);
    }
    return out;
  }
  return value;
}

/** Where in the file, as schema errors say it: a header key that is no header name is not shown. */
function where(path: readonly PropertyKey[]): string {
  return path.length === 0 ? "/" : issueField(path).replace(/\.(\d+)(?=\.|$)/g, (_, i) => `[${i}]`);
}

/**
 * `message` with each configuration string it quotes whole (`/regex/`, `"value"`) shown as
 * written, `${NAME}` and all: a regex built from a secret (`^${INTERNAL_KEY}$`) that does not
 * compile must not print the secret into CI logs. Only whole quoted strings are replaced, so
 * the message's own words stay (a variable whose value is `true` leaves `secure: true` alone).
 */
export function showAsWritten(
  message: string,
  written: ReadonlyMap<string, string>,
  /** How messages quote a value besides whole: an origin is quoted with its secrets cut. */
  shown: ((value: string) => string)[] = [],
): string {
  for (const [substituted, raw] of written) {
    for (const show of [(value: string) => value, ...shown]) {
      for (const quote of ["/", '"']) {
        message = message.replaceAll(
          `${quote}${show(substituted)}${quote}`,
          `${quote}${show(raw)}${quote}`,
        );
      }
    }
  }
  return message;
}
