/**
 * `deno task dev` prints a `curl` line for the metrics (the README points newcomers to it): it must
 * work whatever the shell holds in `VESTIBULE_METRICS_TOKEN`, which vestibule reads trimmed and
 * takes blank as "metrics off".
 */
import assert from "node:assert/strict";
import { startDevStack } from "./_dev_stack.ts";

Deno.test("deno task dev: the banner's metrics curl line answers 200 when the shell has VESTIBULE_METRICS_TOKEN set but empty, or two tokens", async (t) => {
  // As a .env template, or docker compose passing an unset host variable, leaves it; or a
  // rotation's `new,old`, which no one Authorization header carries.
  for (const token of ["", "new-t0ken,old-t0ken"]) {
    await t.step(`VESTIBULE_METRICS_TOKEN=${token}`, async () => {
      const stack = await startDevStack({ PORT: "0", VESTIBULE_METRICS_TOKEN: token });
      try {
        const line = /^ *metrics +curl -H '([^':]+): ([^']*)' (\S+)$/m.exec(stack.stdout);
        assert.ok(line, `a metrics line that is one curl command: ${stack.stdout}${stack.stderr}`);
        const [, name, value, url] = line;
        const response = await fetch(url, { headers: { [name]: value } });
        await response.body?.cancel();
        assert.equal(response.status, 200, `${name}: ${value} was refused`);
      } finally {
        await stack.stop();
      }
    });
  }
});
