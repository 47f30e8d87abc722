/** Success rules (`pin_on`, broadcast) on answers that are slow, large or not the only success. */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

Deno.test("pin_on: a download that declares more than body_limit_bytes streams on, not a 504 while the json check waits for it", async () => {
  const first = new TextEncoder().encode(`{"ok":true,"pad":"${"x".repeat(500)}`);
  const rest = new TextEncoder().encode(`${"y".repeat(3000)}"}`);
  const timers: ReturnType<typeof setTimeout>[] = [];
  const up = startUpstream(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(first);
          // The rest comes after the region's timeout: a slow download, not a dead region.
          timers.push(setTimeout(() => {
            controller.enqueue(rest);
            controller.close();
          }, 600));
        },
      }),
      {
        headers: {
          "content-type": "application/json",
          "content-length": String(first.byteLength + rest.byteLength),
        },
      },
    )
  );
  const edge = startVestibule({
    regions: { us: { origin: up.url, timeout_ms: 300 } },
    default_region: "us",
    body_limit_bytes: 1024,
    rules: [{
      name: "switch",
      type: "regional",
      match: { path: "^/switch/(?<region>\\w+)$" },
      region_from: { path_group: "region" },
      pin_on: { json: { path: "ok", equals: true } },
    }],
  });
  try {
    const res = await fetch(`${edge.url}/switch/us`, {
      headers: { "accept-encoding": "identity" },
    });
    assert.equal(res.status, 200);
    const body = new Uint8Array(await res.arrayBuffer());
    assert.equal(body.byteLength, first.byteLength + rest.byteLength);
    assert.deepEqual(res.headers.getSetCookie(), [], "too large to judge: no pin");
  } finally {
    timers.forEach(clearTimeout);
    await Promise.all([edge.close(), up.close()]);
  }
});

Deno.test("broadcast: a success whose body is slower than timeout_ms still wins, though prefer_failure reads bodies", async () => {
  const timers: ReturnType<typeof setTimeout>[] = [];
  const au = startUpstream(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"user":'));
          timers.push(setTimeout(() => {
            controller.enqueue(new TextEncoder().encode('"ada"}'));
            controller.close();
          }, 600));
        },
      }),
      { status: 201, headers: { "content-type": "application/json" } },
    )
  );
  const us = startUpstream(() => Response.json({ error: "unknown_user" }, { status: 404 }));
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{
      name: "signup",
      type: "broadcast",
      timeout_ms: 300,
      success: { status: [201] },
      prefer_failure: { json: { path: "error", equals: "wrong_password" } },
    }],
  });
  try {
    const res = await fetch(`${edge.url}/signup`, { method: "POST", body: "{}" });
    assert.equal(res.status, 201);
    assert.deepEqual(await res.json(), { user: "ada" });
    assert.match(res.headers.getSetCookie().join("\n"), /__Host-vestibule-region=au/);
  } finally {
    timers.forEach(clearTimeout);
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("broadcast: with allow_multiple_success a pinned client's region wins over the default one", async () => {
  const login = (region: string) => () =>
    new Response(null, {
      status: 302,
      headers: [["location", `/${region}`], ["set-cookie", "sessionid=abc; Path=/; HttpOnly"]],
    });
  const au = startUpstream(login("au"));
  const us = startUpstream(login("us"));
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{
      name: "login",
      type: "broadcast",
      success: { status: [302], set_cookie: "sessionid" },
      allow_multiple_success: true,
    }],
  });
  try {
    const res = await fetch(`${edge.url}/accounts/login/`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie: "__Host-vestibule-region=au" },
      body: "username=kim&password=secret",
    });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "/au", "the pinned region's answer");
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("broadcast: with allow_multiple_success a slower region's call is aborted once the preferred one answered", async () => {
  const aborted = Promise.withResolvers<void>();
  const au = startUpstream((req) => {
    req.signal.addEventListener("abort", () => aborted.resolve(), { once: true });
    // Answers only when vestibule gives up on it.
    return new Promise<Response>((resolve) =>
      req.signal.addEventListener("abort", () => resolve(new Response(null)), { once: true })
    );
  });
  const us = startUpstream(() =>
    new Response(null, {
      status: 302,
      headers: [["location", "/"], ["set-cookie", "sessionid=abc; Path=/; HttpOnly"]],
    })
  );
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{
      name: "login",
      type: "broadcast",
      timeout_ms: 5000,
      success: { status: [302], set_cookie: "sessionid" },
      allow_multiple_success: true,
    }],
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const res = await fetch(`${edge.url}/accounts/login/`, {
      method: "POST",
      redirect: "manual",
      body: "username=kim&password=secret",
    });
    await res.body?.cancel();
    assert.equal(res.status, 302);
    const late = new Promise<string>((
      resolve,
    ) => (timer = setTimeout(() => resolve("late"), 1000)));
    assert.equal(
      await Promise.race([aborted.promise.then(() => "aborted"), late]),
      "aborted",
      "the other region's call ran on after the answer",
    );
  } finally {
    clearTimeout(timer);
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});
