import assert from "node:assert/strict";
import fc from "fast-check";
import { type AccessLogEntry, accessLogLine, oneLine } from "./access_log.ts";

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

Deno.test("accessLogLine() log splitting: NEL, U+2028, U+2029 and C1 controls from a client are escaped", () => {
  const forged = '/a\u0085{"msg":"forged"}\u2028b\u2029c\u009bd\u007f';
  const line = accessLogLine({ ...BASE, method: "G\u0085T", host: "h\u2028", path: forged });
  assert.doesNotMatch(line, /[\u007f-\u009f\u2028\u2029]/);
  // What Python's str.splitlines() splits on.
  const breaks = ["\n", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"];
  for (const c of breaks) assert.ok(!line.includes(c), `U+${c.charCodeAt(0).toString(16)}`);
  const parsed = JSON.parse(line);
  assert.deepEqual([parsed.method, parsed.host, parsed.path], ["G\u0085T", "h\u2028", forged]);
});

Deno.test("accessLogLine() log splitting: every other string in the line is escaped the same way", () => {
  // A request id is checked before it is kept (isSafeRequestId), and names come from the rules
  // file and vestibule's own codes; each is escaped all the same, as the whole line once was.
  const odd = "x\u0085y\u2028z";
  const line = accessLogLine({
    ...BASE,
    requestId: odd,
    route: {
      rule: `r${odd}`,
      type: `t${odd}`,
      region: `g${odd}`,
      regionReason: `w${odd}`,
      upstream: `u${odd}`,
      outcome: `o${odd}`,
      error: `e${odd}`,
      regions: [{ region: `b${odd}`, status: 200, error: `f${odd}`, ms: 1 }],
    },
  });
  assert.doesNotMatch(line, /[\u007f-\u009f\u2028\u2029]/);
  const parsed = JSON.parse(line);
  assert.equal(parsed.request_id, odd);
  assert.deepEqual(parsed.regions, [{ region: `b${odd}`, status: 200, error: `f${odd}`, ms: 1 }]);
  assert.equal(parsed.outcome, `o${odd}`);
});

Deno.test("accessLogLine() keeps a line within PIPE_BUF whatever method, host and path a client sends", () => {
  const escaped = "\u0001".repeat(600); // six bytes each once escaped
  const wide = "€".repeat(600); // three bytes each in UTF-8
  for (const [method, host, path] of [[escaped, wide, escaped], ["A".repeat(20_000), wide, wide]]) {
    const line = accessLogLine({ ...BASE, method, host, path });
    assert.ok(new TextEncoder().encode(line).length < 4096, `${line.length} characters`);
    const parsed = JSON.parse(line);
    for (const [key, sent] of [["method", method], ["host", host], ["path", path]]) {
      assert.ok(parsed[key].endsWith("…"), `${key} is marked as cut`);
      assert.ok(sent.startsWith(parsed[key].slice(0, -1)), `${key} keeps its start`);
    }
  }
});

/** The line as it was first written: one object, one `JSON.stringify`. The builder must match it. */
function referenceLine(entry: AccessLogEntry): string {
  const { route } = entry;
  const tenths = (ms: number) => Math.round(ms * 10) / 10;
  const clip = (v: string) => (v.length > 512 ? `${v.slice(0, 512)}…` : v);
  return oneLine(JSON.stringify({
    time: new Date(entry.time).toISOString(),
    msg: "request",
    request_id: entry.requestId,
    method: clip(entry.method),
    host: clip(entry.host),
    path: clip(entry.path),
    rule: route.rule,
    type: route.type,
    region: route.region,
    region_reason: route.regionReason,
    upstream: route.upstream,
    status: entry.status,
    upstream_ms: route.upstreamMs === undefined ? undefined : tenths(route.upstreamMs),
    total_ms: tenths(entry.totalMs),
    bytes: entry.bytes,
    outcome: route.outcome,
    error: route.error,
    regions: route.regions?.map((r) => ({ ...r, ms: tenths(r.ms) })),
  }));
}

Deno.test("accessLogLine() writes byte for byte what JSON.stringify of the entry's object writes, line breakers escaped", () => {
  // Any string, including quotes, control characters, lone surrogates and forged JSON.
  const text = fc.oneof(
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.constantFrom('"}\n{"msg":"forged', "\ud800", "\\", "é", "h".repeat(600)),
  );
  const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
  // Mostly what a clock gives; now and then any double, so every way of writing one is compared.
  const ms = fc.oneof(
    { arbitrary: fc.double({ min: 0, max: 1e6, noNaN: true }), weight: 4 },
    { arbitrary: fc.double(), weight: 1 },
  );
  const entry: fc.Arbitrary<AccessLogEntry> = fc.record({
    time: fc.oneof(
      fc.integer({ min: 0, max: 253402300799999 }),
      fc.integer({ min: Date.UTC(2026, 0), max: Date.UTC(2027, 0) }),
    ),
    requestId: text,
    method: text,
    host: text,
    path: text,
    status: fc.integer({ min: 100, max: 599 }),
    totalMs: ms,
    bytes: opt(fc.nat()),
    route: fc.record({
      rule: opt(text),
      type: opt(text),
      region: opt(text),
      regionReason: opt(text),
      upstream: opt(text),
      upstreamMs: opt(ms),
      outcome: opt(text),
      error: opt(text),
      regions: opt(fc.array(
        fc.record({
          region: text,
          status: opt(fc.integer({ min: 100, max: 599 })),
          error: opt(text),
          ms,
        }, { requiredKeys: ["region", "ms"] }),
        { maxLength: 3 },
      )),
    }, { requiredKeys: [] }),
  }, {
    requiredKeys: ["time", "requestId", "method", "host", "path", "status", "totalMs", "route"],
  });
  fc.assert(
    fc.property(fc.array(entry, { minLength: 1, maxLength: 5 }), (entries) => {
      // Several in a row, so the remembered second is both hit and missed.
      for (const e of entries) assert.equal(accessLogLine(e), referenceLine(e));
    }),
    { numRuns: 500 },
  );
});

Deno.test("accessLogLine() writes a time from year 10000 on as toISOString() does", () => {
  for (const time of [253402300800000, 253402300800123, 253402387200001]) {
    const line = JSON.parse(accessLogLine({ ...BASE, time }));
    assert.equal(line.time, new Date(time).toISOString());
  }
});

// Edges of the access-log line the property test reaches only by chance.
Deno.test("accessLogLine() wrong duration: tenths written as JSON.stringify writes them, past where integers are exact too", () => {
  const durations = [
    0,
    -0,
    0.04,
    0.05,
    0.15,
    1,
    1.25,
    999.95,
    2 ** 31 / 10 + 0.1,
    99999999999999.9,
    1e14,
    123456789012345678,
    1e21,
    1e22,
    -0.04,
    -1.5,
    -7,
    Infinity,
    -Infinity,
    NaN,
    Number.MIN_VALUE,
  ];
  for (const ms of durations) {
    const entry: AccessLogEntry = { ...BASE, totalMs: ms, route: { upstreamMs: ms } };
    assert.equal(accessLogLine(entry), referenceLine(entry), String(ms));
  }
});

Deno.test("accessLogLine() wrong time: every millisecond of a second is written as toISOString() writes it", () => {
  const second = Date.UTC(2026, 10, 22, 4, 5, 6);
  for (let ms = 0; ms < 1000; ms++) {
    const time = second + ms;
    const line = JSON.parse(accessLogLine({ ...BASE, time }));
    assert.equal(line.time, new Date(time).toISOString(), `${ms} ms`);
  }
});

Deno.test("accessLogLine() mixed log lines: three fields of 510 three-byte characters still fit PIPE_BUF", () => {
  // 510 characters are under the 512 clip, so only the byte bound cuts them (1,532 bytes each).
  const wide = "€".repeat(510);
  const line = accessLogLine({ ...BASE, method: wide, host: wide, path: wide });
  assert.ok(new TextEncoder().encode(line).length < 4096, `${line.length} characters`);
  const parsed = JSON.parse(line);
  for (const key of ["method", "host", "path"]) {
    assert.ok(parsed[key].endsWith("…"), `${key} is marked as cut`);
    assert.ok(new TextEncoder().encode(JSON.stringify(parsed[key])).length <= 1024, key);
  }
});

Deno.test("accessLogLine() a path of exactly 512 characters is written whole, not marked as cut", () => {
  const path = `/${"p".repeat(511)}`;
  assert.equal(JSON.parse(accessLogLine({ ...BASE, path })).path, path);
  const longer = `${path}q`;
  assert.equal(JSON.parse(accessLogLine({ ...BASE, path: longer })).path, `${path}…`);
});
