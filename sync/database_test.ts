import assert from "node:assert/strict";
import { openDatabase, scrubSecrets } from "./database.ts";
import { silentServer } from "../tests/_servers.ts";

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

Deno.test("a connection that times out names the database's host and port, not undefined:undefined", async () => {
  // A server that never answers: the driver's 10 s connect timeout.
  const silent = silentServer();
  const db = openDatabase("au", `postgres://sync@127.0.0.1:${silent.port}/app`);
  try {
    await assert.rejects(db.sql`SELECT 1`, (error: Error) => {
      assert.equal(error.message, `write CONNECT_TIMEOUT 127.0.0.1:${silent.port}`);
      return true;
    });
  } finally {
    await db.close();
    await silent.close();
  }
});
