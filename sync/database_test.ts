import assert from "node:assert/strict";
import { scrubSecrets } from "./database.ts";

Deno.test("scrubSecrets() hides the URL, its password and the password's decoded form", async (t) => {
  const url = "postgres://sync:p%40ss%2Fw0rd@db.example:5432/app";
  await t.step("the URL as configured is shown with its password masked", () => {
    assert.equal(
      scrubSecrets(`could not connect to ${url}`, url),
      "could not connect to postgres://sync:***@db.example:5432/app",
    );
  });
  await t.step("the password alone, percent-encoded as configured", () => {
    assert.equal(scrubSecrets("auth p%40ss%2Fw0rd failed", url), "auth *** failed");
  });
  await t.step("the password alone, decoded as the driver sends it", () => {
    assert.equal(scrubSecrets('password "p@ss/w0rd" rejected', url), 'password "***" rejected');
  });
});

Deno.test("scrubSecrets() hides a short password where the URL is quoted, and a 4-character one anywhere", async (t) => {
  await t.step("a 3-character password inside the quoted URL", () => {
    const url = "postgres://sync:k9x@db.example:5432/app";
    assert.equal(
      scrubSecrets(`could not connect to ${url}`, url),
      "could not connect to postgres://sync:***@db.example:5432/app",
    );
  });
  await t.step("a 4-character password alone", () => {
    const url = "postgres://sync:k9xQ@db.example:5432/app";
    assert.equal(scrubSecrets('password "k9xQ" rejected', url), 'password "***" rejected');
  });
});
