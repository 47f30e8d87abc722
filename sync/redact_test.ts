import assert from "node:assert/strict";
import { redactUrl } from "./redact.ts";

Deno.test("redactUrl() hides the password and password parameters", () => {
  assert.equal(
    redactUrl("postgres://sync:s3cret@db.example:5432/app?sslmode=require&password=p2"),
    "postgres://sync:***@db.example:5432/app?sslmode=require&password=***",
  );
  assert.equal(redactUrl("postgres://db.example/app"), "postgres://db.example/app");
});

Deno.test("redactUrl() hides an unparseable URL whole", () => {
  assert.equal(redactUrl("not a url with s3cret"), "<unparseable database URL>");
});

Deno.test("redactUrl() hides every parameter that names a password, such as sslpassword", () => {
  assert.equal(
    redactUrl(
      "postgres://sync@db.example/app?sslpassword=k3y-pass&PassWord=p2&sslmode=verify-full",
    ),
    "postgres://sync@db.example/app?sslpassword=***&PassWord=***&sslmode=verify-full",
  );
});
