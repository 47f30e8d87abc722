import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

/** Upstreams that answer a region switch (a POST to /switch) with a redirect. */
const switched = () => new Response(null, { status: 302, headers: { location: "/" } });

function switchRules(au: string, us: string) {
  return {
    regions: { au: { origin: au }, us: { origin: us } },
    default_region: "us",
    rules: [{
      name: "switch",
      type: "regional",
      match: { path: "^/switch$" },
      region_from: { query: "region" },
      pin_on: { status: "3xx" },
    }],
  };
}

/** A multipart body of one part with the given headers and value, and its Content-Type. */
function onePart(
  partHeaders: string,
  value: string,
): { type: string; body: Uint8Array<ArrayBuffer> } {
  const boundary = "XyZ123";
  const body = `--${boundary}\r\n${partHeaders}\r\n\r\n${value}\r\n--${boundary}--\r\n`;
  return {
    type: `multipart/form-data; boundary=${boundary}`,
    body: new TextEncoder().encode(body),
  };
}

Deno.test("forced pin: a region_from copy PHP or Rack reads where the edge read none names no region", async (t) => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  const contradicted = async (
    query: string,
    headers: Record<string, string>,
    body: Uint8Array<ArrayBuffer> | null,
  ) => {
    const before = au.received.length;
    const res = await fetch(`${edge.url}/switch?${query}`, {
      method: "POST",
      redirect: "manual",
      headers,
      body,
    });
    await res.body?.cancel();
    assert.equal(au.received.length, before, "the app reads us; the edge sent it to au");
    assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
  };
  try {
    // PHP's rfc1867 reads `name` from any Content-Disposition, never checking for form-data;
    // Rack too (2: /Content-Disposition:[^:]*;\s*name=/; 3: "ignore actual content-disposition value").
    // busboy skips such a part.
    await t.step("PHP/Rack: a part with Content-Disposition: attachment; name=region", async () => {
      const { type, body } = onePart('Content-Disposition: attachment; name="region"', "us");
      await contradicted("region=au", { "content-type": type }, body);
    });
    // PHP's rfc1867 knows only `filename`, so a part with `filename*=` is a field in $_POST;
    // busboy reads filename* as the filename and the edge skips it as a file.
    await t.step("PHP: a part with filename*= only is a field to PHP", async () => {
      const { type, body } = onePart(
        "Content-Disposition: form-data; name=\"region\"; filename*=UTF-8''a.txt",
        "us",
      );
      await contradicted("region=au", { "content-type": type }, body);
    });
    // PHP's getword_conf unquotes '…' as it does "…"; busboy keeps the quotes in the name.
    await t.step("PHP: a single-quoted part name", async () => {
      const { type, body } = onePart("Content-Disposition: form-data; name='region'", "us");
      await contradicted("region=au", { "content-type": type }, body);
    });
    // Rack (2 and 3) names a part without a Content-Disposition by its Content-ID.
    await t.step("Rack: a part named by Content-ID", async () => {
      const { type, body } = onePart("Content-ID: region", "us");
      await contradicted("region=au", { "content-type": type }, body);
    });
    // busboy keeps the first 2,000 header lines of a part (maxHeaderPairs) and drops the rest
    // silently; PHP's rfc1867 and Rack read every line, so the Content-Disposition after them
    // names a field only they see.
    await t.step("PHP/Rack: Content-Disposition after 2,000 other part headers", async () => {
      const padding = Array.from({ length: 2000 }, (_, i) => `X-H${i}: v`).join("\r\n");
      const { type, body } = onePart(
        `${padding}\r\nContent-Disposition: form-data; name="region"`,
        "us",
      );
      await contradicted("region=au", { "content-type": type }, body);
    });
    // busboy keeps 80 KiB of a part's headers (maxHeaderSize); PHP reads a longer line in 5 KiB
    // pieces appended to the header before, then the Content-Disposition line as its own.
    await t.step("PHP: Content-Disposition after an 80 KiB header", async () => {
      const { type, body } = onePart(
        `X-Pad: ${"x".repeat(82 * 1024)}\r\nContent-Disposition: form-data; name="region"`,
        "us",
      );
      await contradicted("region=au", { "content-type": type }, body);
    });
    // Rack's media type splits at /\s*[;,]\s*/ (Rack 3: rstrip), so a tab before `;` is
    // still application/x-www-form-urlencoded; the edge cuts at `;`, `,` or a space only.
    await t.step("Rack: a tab before ; in a urlencoded Content-Type", async () => {
      await contradicted(
        "region=au",
        { "content-type": "application/x-www-form-urlencoded\t;charset=utf-8" },
        new TextEncoder().encode("region=us"),
      );
    });
    // Rack 2's Request#GET parses the query with separators '&;' (/[&;] */): the last copy,
    // region=us, wins in params.
    await t.step("Rack 2: a ;-separated copy in the query", async () => {
      await contradicted("region=au&x=1;region=us", {}, null);
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("forced pin: a multipart Content-Type whose last boundary= frames Rack's parts names no region", async (t) => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  // Rack's MULTIPART regex (%r|\Amultipart/.*boundary=\"?([^\";,]+)\"?|ni) is greedy: it takes
  // the LAST `boundary=` in the header, inside another parameter's name or quoted value too.
  // busboy and PHP take the boundary parameter B. The parts framed by C sit inside B's field x:
  // Rack reads region=us, the edge only x.
  const inner = '--C\r\nContent-Disposition: form-data; name="region"\r\n\r\nus\r\n--C--\r\n';
  const body = `--B\r\nContent-Disposition: form-data; name="x"\r\n\r\n${inner}\r\n--B--\r\n`;
  const contradicted = async (type: string) => {
    const before = au.received.length;
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": type },
      body: new TextEncoder().encode(body),
    });
    await res.body?.cancel();
    assert.equal(au.received.length, before, "Rack reads us; the edge sent it to au");
    assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
  };
  try {
    await t.step("x-boundary=C after boundary=B", async () => {
      await contradicted("multipart/form-data; boundary=B; x-boundary=C");
    });
    await t.step('a quoted value "boundary=C" after boundary=B', async () => {
      await contradicted('multipart/form-data; boundary=B; a="boundary=C"');
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("forced pin: a body Laravel or Symfony reads by its Content-Type names no region", async (t) => {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  const contradicted = async (method: string, type: string, body: string) => {
    const before = au.received.length;
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method,
      redirect: "manual",
      headers: { "content-type": type },
      body: new TextEncoder().encode(body),
    });
    await res.body?.cancel();
    assert.equal(au.received.length, before, "the app reads us; the edge sent it to au");
    assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
  };
  try {
    // Laravel's isJson() is Str::contains(Content-Type, ['/json', '+json']) and input() then reads
    // the JSON body, whatever the media type: the edge reads this one as a urlencoded form.
    await t.step(
      "Laravel: application/x-www-form-urlencoded; x=a+json with a JSON body",
      async () => {
        await contradicted(
          "POST",
          "application/x-www-form-urlencoded; x=a+json",
          '{"region":"us"}',
        );
      },
    );
    // Symfony's Request::createFromGlobals parse_str()s a PUT, PATCH or DELETE body whose
    // Content-Type merely starts with application/x-www-form-urlencoded.
    await t.step("Symfony: PUT with application/x-www-form-urlencodedx", async () => {
      await contradicted("PUT", "application/x-www-form-urlencodedx", "region=us");
    });
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("rule confusion: a form field copy Rack 2 files under the matched name stops the match", async (t) => {
  const admin = startUpstream();
  const app = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: app.url } },
    upstreams: { public: { origin: admin.url } },
    default_region: "us",
    rules: [
      {
        name: "public-form",
        type: "global",
        upstream: "public",
        match: { methods: ["POST"], path: "^/form$", body: { form: { action: "view" } } },
      },
      { name: "app", type: "regional" },
    ],
  });
  try {
    // Rack 2's normalize_params drops leading brackets: Rack::Request#POST and Rails' params
    // read `[action]=delete` as action=delete (the last copy wins). The query matcher and
    // region_from count it (valuesAsAppsRead / filedUnder); the form matcher does not.
    await t.step("action=view&[action]=delete matches action=view", async () => {
      const res = await fetch(`${edge.url}/form`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "action=view&%5Baction%5D=delete",
      });
      await res.body?.cancel();
      assert.equal(admin.received.length, 0, "Rack reads action=delete; the edge matched view");
    });
  } finally {
    await Promise.all([edge.close(), admin.close(), app.close()]);
  }
});
