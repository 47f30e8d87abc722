/**
 * @module Worker entry for {@linkcode validateRules}: takes the substituted rules, answers with
 * their validation. Run by `serve_rules.ts`, so zod loads in this worker's isolate, not the server's.
 */
import { validateRules } from "./rules_validate.ts";

const scope = globalThis as unknown as {
  onmessage: (event: MessageEvent<unknown>) => void;
  postMessage(message: unknown): void;
};
scope.onmessage = (event) => scope.postMessage(validateRules(event.data));
