import assert from "node:assert/strict";
import { requestId } from "./request_id.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test("requestId() keeps a short id made of safe characters", () => {
  for (
    const id of ["abc", "01HZX3G8Y4M1N2P3Q4R5S6T7V8", "tenant:42/req.7_a-b+c=", "x".repeat(64)]
  ) {
    assert.equal(requestId(id), id);
  }
});

Deno.test("requestId() replaces a missing, long or unsafe id with a new UUID", () => {
  const unsafe = [
    null,
    undefined,
    "",
    "x".repeat(65),
    "a b",
    'a","status":200,"x":"',
    "a\r\nset-cookie: x=1",
    "<script>",
    "é",
  ];
  for (const id of unsafe) {
    const made = requestId(id);
    assert.match(made, UUID, `for ${JSON.stringify(id)}`);
  }
  assert.notEqual(requestId(null), requestId(null));
});
