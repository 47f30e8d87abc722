/**
 * Method confusion through a broadcast body the edge reads no parameters from alike (d34b29a).
 * Such a body counts as naming every method Rack's MethodOverride takes, "except JSON that does
 * not parse"; but the exception covers every JSON body the edge does not read, and Laravel's
 * json_decode parses `{"_method":"PUT"}` whatever charset the Content-Type declares, so it ran as
 * a PUT in every region. The other way round, a form whose charset is not UTF-8 (Apache
 * HttpClient's UrlEncodedFormEntity sends `charset=ISO-8859-1` by default) or that has over 1000
 * fields is refused even when it names no method, though Rack and PHP read the form's bytes
 * whatever its charset, and the edge can read `_method` from them as they do.
 */
import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";

function loginRules(us: string) {
  return {
    regions: { us: { origin: us } },
    default_region: "us",
    rules: [
      {
        name: "login",
        type: "broadcast",
        match: { methods: ["POST"], path: "^/login$" },
        success: { status: [200] },
      },
      { name: "app", type: "regional" },
    ],
  };
}

async function post(url: string, type: string, body: string | Uint8Array<ArrayBuffer>) {
  const response = await fetch(`${url}/login`, {
    method: "POST",
    headers: { accept: "application/json", "content-type": type },
    body,
  });
  const text = await response.text();
  return { status: response.status, text };
}

Deno.test("method confusion: a broadcast JSON body with a non-UTF-8 charset names its _method as Laravel reads it", async (t) => {
  const us = startUpstream();
  const edge = startVestibule(loginRules(us.url));
  try {
    for (const charset of ["iso-8859-1", "us-ascii", "windows-1252"]) {
      await t.step(`application/json; charset=${charset} with _method PUT is refused`, async () => {
        const { status, text } = await post(
          edge.url,
          `application/json; charset=${charset}`,
          '{"_method":"PUT","username":"olivia"}',
        );
        assert.deepEqual([status, JSON.parse(text).error], [400, "ambiguous_method"]);
        assert.equal(us.received.length, 0, "a region ran the PUT");
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("method confusion: a broadcast body the edge reads no parameters from alike still names its _method", async (t) => {
  const us = startUpstream();
  const edge = startVestibule(loginRules(us.url));
  const boundary = "b0undary";
  const sent: Array<[string, string, string, number]> = [
    // PHP keeps the first max_input_vars (1000) fields, Rack 3 up to 4096.
    [
      "a form over the edge's 1000 fields, _method first",
      "application/x-www-form-urlencoded",
      "_method=put" + "&f=1".repeat(1000),
      400,
    ],
    // Rack's POST parses multipart/mixed and /related as form-data.
    [
      "multipart/mixed (Rack)",
      `multipart/mixed; boundary=${boundary}`,
      `--${boundary}\r\ncontent-disposition: form-data; name="_method"\r\n\r\nput\r\n--${boundary}--\r\n`,
      400,
    ],
    // Laravel ignores JSON json_decode refuses.
    ["JSON that does not parse", "application/json", '{"_method": "put",', 200],
  ];
  try {
    for (const [label, type, body, status] of sent) {
      await t.step(`${label}: ${status}`, async () => {
        const before = us.received.length;
        const answer = await post(edge.url, type, body);
        assert.equal(answer.status, status, answer.text);
        assert.equal(us.received.length, before + (status === 200 ? 1 : 0));
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("method confusion: a broadcast form the edge reads as Rack does is not refused when it names no method", async (t) => {
  const us = startUpstream();
  const edge = startVestibule(loginRules(us.url));
  try {
    const sent: Array<[string, string, string]> = [
      [
        "an ISO-8859-1 form (Apache HttpClient's default)",
        "application/x-www-form-urlencoded; charset=ISO-8859-1",
        "username=ren%E9e&password=eagle",
      ],
      [
        "a form of 1001 fields",
        "application/x-www-form-urlencoded",
        "username=olivia" + "&f=1".repeat(1000),
      ],
      // Past the 4096 fields Rack 3 reads (PHP reads 1000): no app reads that _method.
      [
        "a form whose _method comes after 4096 fields",
        "application/x-www-form-urlencoded",
        "f=1&".repeat(4096) + "_method=put",
      ],
    ];
    for (const [label, type, body] of sent) {
      await t.step(`${label} reaches the regions`, async () => {
        const before = us.received.length;
        const { status, text } = await post(edge.url, type, body);
        assert.equal(status, 200, text);
        assert.equal(us.received.length, before + 1);
        assert.equal(new TextDecoder().decode(us.received[before].body), body, "replayed as sent");
      });
    }
    await t.step("the same ISO-8859-1 form with _method=put is still refused", async () => {
      const before = us.received.length;
      const { status, text } = await post(
        edge.url,
        "application/x-www-form-urlencoded; charset=ISO-8859-1",
        "username=ren%E9e&_method=put",
      );
      assert.deepEqual([status, JSON.parse(text).error], [400, "ambiguous_method"]);
      assert.equal(us.received.length, before);
    });
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("method confusion: browser form posts to a broadcast login reach the regions byte for byte", async (t) => {
  const us = startUpstream();
  const edge = startVestibule(loginRules(us.url));
  const boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
  const file = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x0d, 0x0a, 0x2d, 0x2d, 0x00, 0x80]);
  const head = new TextEncoder().encode(
    `--${boundary}\r\ncontent-disposition: form-data; name="authenticity_token"\r\n\r\n` +
      `abc+/=\r\n--${boundary}\r\nContent-Disposition: form-data; name="avatar"; ` +
      `filename="r\u00e9sum\u00e9 photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
  );
  const tail = new TextEncoder().encode(`\r\n--${boundary}--\r\n`);
  const multipart = new Uint8Array([...head, ...file, ...tail]);
  const sent: Array<[string, string | null, string | Uint8Array<ArrayBuffer>]> = [
    [
      "a Rails form with authenticity_token",
      "application/x-www-form-urlencoded",
      "utf8=%E2%9C%93&authenticity_token=q%2Bx%2F0%3D%3D&user%5Bemail%5D=a%40b.c&commit=Log+in",
    ],
    ["a charset=UTF-8 form", "application/x-www-form-urlencoded; charset=UTF-8", "u=olivia"],
    [
      "multipart/form-data with a binary file",
      `multipart/form-data; boundary=${boundary}`,
      multipart,
    ],
    ["an empty body", "application/x-www-form-urlencoded", ""],
    ["a body without Content-Type", null, "username=olivia"],
  ];
  try {
    for (const [label, type, body] of sent) {
      await t.step(label, async () => {
        const before = us.received.length;
        const response = await fetch(`${edge.url}/login`, {
          method: "POST",
          headers: type === null ? {} : { "content-type": type },
          body: typeof body === "string" && type === null ? new TextEncoder().encode(body) : body,
        });
        const text = await response.text();
        assert.equal(response.status, 200, text);
        assert.equal(us.received.length, before + 1);
        const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
        assert.deepEqual(us.received[before].body, bytes);
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

// A form in UTF-16 under a label other than "utf-16" (ASP.NET Core's `Encoding.GetEncoding`:
// `unicode`, `iso-10646-ucs-2`, `unicodeFFFE`; Java's `UnicodeLittleUnmarked`, `UTF_16LE`): read as
// ASCII, it showed no `_method`, and ASP.NET Core's override ran the POST as a PUT.
function utf16le(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    out[2 * i] = text.charCodeAt(i) & 0xff;
    out[2 * i + 1] = text.charCodeAt(i) >> 8;
  }
  return out;
}

function utf16be(text: string): Uint8Array<ArrayBuffer> {
  const le = utf16le(text);
  const out = new Uint8Array(le.length);
  for (let i = 0; i < le.length; i += 2) [out[i], out[i + 1]] = [le[i + 1], le[i]];
  return out;
}

Deno.test("method confusion: a broadcast UTF-16 form under another charset label names its _method", async (t) => {
  const us = startUpstream();
  const edge = startVestibule(loginRules(us.url));
  const form = "username=olivia&_method=PUT";
  const sent: Array<[string, Uint8Array<ArrayBuffer>]> = [
    ["unicode", utf16le(form)],
    ["iso-10646-ucs-2", utf16le(form)],
    ["unicodeFFFE", utf16be(form)],
    ["csUnicode", utf16le(form)],
    ["UnicodeLittleUnmarked", utf16le(form)],
    ["UTF_16LE", utf16le(form)],
  ];
  try {
    for (const [charset, body] of sent) {
      await t.step(`charset=${charset} with _method=PUT is refused`, async () => {
        const before = us.received.length;
        const { status, text } = await post(
          edge.url,
          `application/x-www-form-urlencoded; charset=${charset}`,
          body,
        );
        assert.deepEqual([status, JSON.parse(text).error], [400, "ambiguous_method"], text);
        assert.equal(us.received.length, before, "a region ran the PUT");
      });
    }
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});

Deno.test("method confusion: a form's _method is checked when a body matcher has read the form, not only on a broadcast", async () => {
  // Rack's MethodOverride runs this POST as a DELETE, which the rules send to the website.
  const web = startUpstream();
  const us = startUpstream();
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    upstreams: { website: { origin: web.url } },
    default_region: "us",
    rules: [
      { name: "deletes", type: "global", match: { methods: ["DELETE"] }, upstream: "website" },
      { name: "notes", type: "regional", match: { body: { form: { kind: "note" } } } },
      { name: "app", type: "regional" },
    ],
  });
  try {
    const res = await fetch(`${edge.url}/api/n`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "kind=note&_method=DELETE",
    });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, "ambiguous_method");
    assert.deepEqual([us.received.length, web.received.length], [0, 0]);
  } finally {
    await Promise.all([edge.close(), web.close(), us.close()]);
  }
});
