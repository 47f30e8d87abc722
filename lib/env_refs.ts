/** @module Substitutes `${NAME}` environment references in the string values of a parsed rules file. */

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Reads one environment variable; `Deno.env.get` in production, a plain object in tests. */
export type EnvLookup = (name: string) => string | undefined;

/**
 * Returns a copy of `value` with every `${NAME}` in its strings replaced by the variable's value.
 *
 * A missing variable is a start-up error naming the variable and where it is used, because an
 * empty origin or secret would otherwise fail much later and far from its cause; so is a `${`
 * that does not start a well-formed reference.
 */
export function substituteEnv(value: unknown, env: EnvLookup, path = ""): unknown {
  if (typeof value === "string") {
    // `${AU-SECRET}` or `${ AU_SECRET }` would otherwise pass as literal text, a typo sent to the
    // origin as its secret.
    const stray = value.replace(ENV_REF, "").match(/\$\{[^}]*\}?/);
    if (stray) {
      throw new ReferenceError(
        `Cannot read rules: "${stray[0]}" at ${path || "/"} is not an environment reference ` +
          "(write ${NAME}, with letters, digits and _)",
      );
    }
    return value.replace(ENV_REF, (_, name: string) => {
      const found = env(name);
      if (found === undefined) {
        throw new ReferenceError(
          `Cannot read rules: environment variable "${name}" is not set (used at ${path || "/"})`,
        );
      }
      return found;
    });
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => substituteEnv(item, env, `${path}[${i}]`));
  }
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = substituteEnv(item, env, path ? `${path}.${key}` : key);
    }
    return out;
  }
  return value;
}
