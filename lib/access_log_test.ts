import assert from "node:assert/strict";
import { type AccessLogEntry, accessLogLine } from "./access_log.ts";

const BASE: AccessLogEntry = {
  time: Date.UTC(2026, 10, 22, 4, 5, 6, 789),
  requestId: "r1",
  method: "GET",
  host: "app.example.com",
  path: "/x",
  status: 200,
  totalMs: 12.345,
  route: {},
};

Deno.test("accessLogLine() writes an ISO time, snake_case keys and leaves out what does not apply", () => {
  const line = accessLogLine({ ...BASE, route: { rule: "website", type: "global" } });
  assert.equal(
    line,
    '{"time":"2026-11-22T04:05:06.789Z","msg":"request","request_id":"r1","method":"GET",' +
      '"host":"app.example.com","path":"/x","rule":"website","type":"global","status":200,' +
      '"total_ms":12.3}',
  );
});

Deno.test("accessLogLine() rounds every duration to a tenth of a millisecond", () => {
  const line = JSON.parse(accessLogLine({
    ...BASE,
    route: {
      upstreamMs: 3.14159,
      regions: [{ region: "au", status: 200, ms: 1.06 }, {
        region: "us",
        error: "timeout",
        ms: 9.99,
      }],
    },
  }));
  assert.equal(line.upstream_ms, 3.1);
  assert.equal(line.total_ms, 12.3);
  assert.deepEqual(line.regions, [
    { region: "au", status: 200, ms: 1.1 },
    { region: "us", error: "timeout", ms: 10 },
  ]);
});

Deno.test("accessLogLine() cuts a huge host or path and keeps a forged line on one line", () => {
  const line = accessLogLine({
    ...BASE,
    host: "h".repeat(10_000),
    path: '/a"}\n{"msg":"forged',
  });
  assert.ok(line.length < 1_500, `${line.length} characters`);
  assert.ok(!line.includes("\n"));
  const parsed = JSON.parse(line);
  assert.equal(parsed.host, `${"h".repeat(512)}…`);
  assert.equal(parsed.path, '/a"}\n{"msg":"forged');
});
