import assert from "node:assert/strict";
import { VestibuleMetrics } from "./metrics.ts";
import { metricsResponse, readMetricsToken } from "./metrics_endpoint.ts";

const URL = "http://edge.test/_vestibule/metrics";

Deno.test("metricsResponse() answers 404 when no token is configured, whatever is presented", async () => {
  for (const token of [undefined, ""]) {
    const res = await metricsResponse(
      new Request(URL, { headers: { authorization: "Bearer " } }),
      { metrics: new VestibuleMetrics(), token },
    );
    assert.equal(res.status, 404);
    await res.body?.cancel();
  }
});

Deno.test("metricsResponse() accepts only the exact bearer token", async () => {
  const metrics = new VestibuleMetrics();
  metrics.ocapCache("hit");
  const token = "t0ken-with-enough-entropy";
  const ask = (authorization?: string) =>
    metricsResponse(
      new Request(URL, { headers: authorization ? { authorization } : {} }),
      { metrics, token },
    );
  for (
    const wrong of [
      undefined,
      "Bearer",
      `Bearer ${token} extra`,
      `Token ${token}`,
      `Bearer T${token.slice(1)}`,
    ]
  ) {
    const res = await ask(wrong);
    assert.equal(res.status, 401, String(wrong));
    assert.doesNotMatch(await res.text(), /vestibule_/);
  }
  const res = await ask(`Bearer ${token}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.match(await res.text(), /^vestibule_ocap_cache_total\{result="hit"\} 1$/m);
});

Deno.test("readMetricsToken() drops a mounted secret's line break and refuses a token no header can carry", () => {
  assert.equal(readMetricsToken(undefined), undefined);
  assert.equal(readMetricsToken("  \n"), undefined, "blank is unset: the endpoint is off");
  assert.equal(readMetricsToken("s3cret-Token_1.~+/==\n"), "s3cret-Token_1.~+/==");
  for (const bad of ["two words", "tok\u00e9n", "a=b"]) {
    assert.throws(() => readMetricsToken(bad), /VESTIBULE_METRICS_TOKEN is not a bearer token/);
  }
});

Deno.test("metricsResponse() takes the token only from the Bearer scheme, not from inside another scheme's credentials", async () => {
  const token = "t0ken-with-enough-entropy";
  for (const authorization of [`Basic Bearer ${token}`, `NotBearer ${token}`, `xBearer ${token}`]) {
    const res = await metricsResponse(
      new Request(URL, { headers: { authorization } }),
      { metrics: new VestibuleMetrics(), token },
    );
    assert.equal(res.status, 401, authorization);
    await res.body?.cancel();
  }
});

const TOKEN = "scrape-token-0123456789";

Deno.test("metricsResponse() wants the Bearer scheme and the token apart (RFC 6750 §2.1: one or more spaces)", async () => {
  const metrics = new VestibuleMetrics();
  for (
    const [authorization, status] of [
      [`Bearer ${TOKEN}`, 200],
      [`Bearer   ${TOKEN}`, 200],
      [`Bearer${TOKEN}`, 401],
      [`Bearer ${TOKEN} ${TOKEN}`, 401],
    ] as const
  ) {
    const res = await metricsResponse(
      new Request("http://edge/_vestibule/metrics", { headers: { authorization } }),
      { metrics, token: TOKEN },
    );
    await res.body?.cancel();
    assert.equal(res.status, status, authorization);
  }
});

Deno.test("metricsResponse() accepts each of several comma-separated tokens, for a rotation without a gap", async () => {
  const ask = async (authorization: string) => {
    const res = await metricsResponse(new Request(URL, { headers: { authorization } }), {
      metrics: new VestibuleMetrics(),
      token: readMetricsToken(" new-t0ken-0123456789 , old-t0ken-0123456789\n"),
    });
    await res.body?.cancel();
    return res.status;
  };
  assert.equal(await ask("Bearer new-t0ken-0123456789"), 200);
  assert.equal(await ask("Bearer old-t0ken-0123456789"), 200);
  for (
    const wrong of [
      "Bearer new-t0ken-0123456789,old-t0ken-0123456789",
      "Bearer new-t0ken-0123456789 old-t0ken-0123456789",
      "Bearer ",
      "Bearer other-t0ken-0123456789",
    ]
  ) {
    assert.equal(await ask(wrong), 401, wrong);
  }
  assert.throws(() => readMetricsToken("new-token,"), /not a bearer token/);
  assert.throws(() => readMetricsToken("new-token,,old"), /not a bearer token/);
});
