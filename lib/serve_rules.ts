/**
 * @module Loads the rules for a serving process with the schema check in a worker, which ends
 * once it has answered. zod and the schema, held in the server's heap for good, made garbage
 * collection slower for every request: main.ts loading its rules this way spent 0.960 and 0.953
 * of the CPU per request of main.ts loading them in process (two runs of seven rounds, the two
 * loaded side by side, `bench/_side_by_side.ts`). Where no worker can start, the check runs in
 * process, as `load_rules.ts` does.
 */
import type { Config } from "./compile_rules.ts";
import type { EnvLookup } from "./env_refs.ts";
import { compileValidated, readRulesText, substituteRules } from "./read_rules.ts";
import type { RulesValidation } from "./rules_validate.ts";

/** {@linkcode loadRules}'s result and errors, without loading zod into this isolate. */
export async function loadRulesForServing(path: string, env: EnvLookup): Promise<Config> {
  const { text, source } = await readRulesText(path);
  const rules = substituteRules(text, env, source);
  return compileValidated(await validateOffThread(rules.substituted), rules);
}

/** Validates in a worker that ends with the answer; in process when no worker can run. */
async function validateOffThread(substituted: unknown): Promise<RulesValidation> {
  let worker: Worker | undefined;
  try {
    // A worker needs read access to each module it loads (this isolate does not): without it,
    // Deno prints the worker's "Uncaught … Requires read access" before `onerror` can stop it.
    const modules = new URL(".", import.meta.url);
    if (Deno.permissions.querySync({ name: "read", path: modules }).state !== "granted") {
      throw new Deno.errors.NotCapable(`No read access to ${modules}`);
    }
    worker = new Worker(new URL("./rules_validate_worker.ts", import.meta.url), { type: "module" });
    const answered = Promise.withResolvers<RulesValidation>();
    worker.onmessage = (event: MessageEvent<RulesValidation>) => answered.resolve(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      answered.reject(event.error ?? new Error(event.message));
    };
    worker.postMessage(substituted);
    return await answered.promise;
  } catch {
    const { validateRules } = await import("./rules_validate.ts");
    return validateRules(substituted);
  } finally {
    worker?.terminate();
  }
}
