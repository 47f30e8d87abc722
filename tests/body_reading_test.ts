import assert from "node:assert/strict";
import { gunzipSync, gzipSync } from "node:zlib";
import { startUpstream, startVestibule } from "./_servers.ts";
import { startActionEdge, VIEW_FORM, VIEW_JSON } from "./_action_edge.ts";

const json = VIEW_JSON;
const form = VIEW_FORM;
/** Valid JSON whose urlencoded reading is three pairs, the middle one action=delete. */
const JSON_AND_FORM = '{"action":"view","x":"&action=delete&"}';

Deno.test("rule confusion: a json matcher does not match a body the app reads as a form", async (t) => {
  const edge = startActionEdge(json);
  try {
    // PHP's $_POST, Laravel's input(), Django's request.POST, Rack's POST, Express's urlencoded()
    // and Spring's getParameter read the body as the form its Content-Type names: action=delete.
    await t.step("Content-Type: application/x-www-form-urlencoded", async () => {
      await edge.confused(
        "",
        { "content-type": "application/x-www-form-urlencoded" },
        JSON_AND_FORM,
      );
    });
    // Rack (and Rails) read a POST without a Content-Type as a form too.
    await t.step("no Content-Type", async () => {
      await edge.confused(
        "",
        {},
        new TextEncoder().encode(JSON_AND_FORM),
        "Rack reads action=delete",
      );
    });
  } finally {
    await edge.close();
  }
});

Deno.test("rule confusion: a json matcher does not match JSON that PHP's json_decode refuses", async (t) => {
  // Laravel's input() reads json_decode($content, true): on an error that is null, an empty bag,
  // and input('action') is then the query's.
  const edge = startActionEdge(json);
  const confused = (body: BodyInit) =>
    edge.confused("?action=delete", { "content-type": "application/json" }, body);
  try {
    await t.step("a leading UTF-8 BOM (JSON_ERROR_SYNTAX)", async () => {
      await confused('\uFEFF{"action":"view"}');
    });
    await t.step("invalid UTF-8 in a string (JSON_ERROR_UTF8)", async () => {
      const head = new TextEncoder().encode('{"action":"view","x":"');
      await confused(new Uint8Array([...head, 0xff, 0x22, 0x7d]));
    });
    await t.step("a lone surrogate escape (JSON_ERROR_UTF16)", async () => {
      await confused('{"action":"view","x":"\\ud800"}');
    });
    await t.step("nesting deeper than json_decode's default 512 (JSON_ERROR_DEPTH)", async () => {
      await confused(`{"action":"view","x":${"[".repeat(600)}${"]".repeat(600)}}`);
    });
  } finally {
    await edge.close();
  }
});

// Go's encoding/json ("preferring an exact match but also accepting a case-insensitive match",
// each key assigned in turn, so the last wins) and ASP.NET Core (System.Text.Json with the web
// defaults) match keys to fields ignoring letter case; `JSON.parse` keeps `action` and `ACTION`
// apart.
Deno.test("rule confusion: a json matcher does not match a body whose case-variant key Go and ASP.NET Core read last", async (t) => {
  const edge = startActionEdge(json);
  try {
    for (
      const body of [
        '{"action":"view","ACTION":"delete"}',
        '{"action":"view","Action":"delete"}',
        // The variant spelt with a JSON escape: \u0041 is A to every parser.
        '{"action":"view","\\u0041CTION":"delete"}',
      ]
    ) {
      await t.step(body, async () => {
        await edge.confused(
          "",
          { "content-type": "application/json" },
          body,
          "Go and ASP.NET Core read action=delete",
        );
      });
    }
    await t.step("control: keys that differ by more than case still match", async () => {
      assert.equal(
        await edge.matched(
          "",
          { "content-type": "application/json" },
          '{"action":"view","actions":"delete"}',
        ),
        true,
      );
    });
  } finally {
    await edge.close();
  }
});

Deno.test("rule confusion: a body matcher does not match when the query holds a copy the app reads first", async (t) => {
  // Servlet §3.1.1: query string data is presented before post body data, so Spring's
  // getParameter / @RequestParam read the query's action=delete; Symfony's and Laravel's
  // Request::get() look in the query before the body too (JSON included, for Laravel).
  await t.step("form: ?action=delete with a urlencoded body action=view", async () => {
    const edge = startActionEdge(form);
    try {
      await edge.confused(
        "?action=delete",
        { "content-type": "application/x-www-form-urlencoded" },
        "action=view",
      );
    } finally {
      await edge.close();
    }
  });
  await t.step("form: ?action=delete with a multipart body action=view", async () => {
    const edge = startActionEdge(form);
    const b = "XyZ123";
    try {
      await edge.confused(
        "?action=delete",
        { "content-type": `multipart/form-data; boundary=${b}` },
        `--${b}\r\nContent-Disposition: form-data; name="action"\r\n\r\nview\r\n--${b}--\r\n`,
      );
    } finally {
      await edge.close();
    }
  });
  await t.step("json: ?action=delete with a JSON body action=view", async () => {
    const edge = startActionEdge(json);
    try {
      await edge.confused(
        "?action=delete",
        { "content-type": "application/json" },
        '{"action":"view"}',
        "Laravel's and Symfony's get() read action=delete",
      );
    } finally {
      await edge.close();
    }
  });
});

/**
 * A stored (level 0) gzip member of `action=delete` with a gzip FCOMMENT field of `&action=view&`:
 * its raw bytes hold `action=view`, its inflated bytes (what body-parser hands the app) do not.
 */
function gzipWithViewComment(): Uint8Array<ArrayBuffer> {
  const stored = gzipSync("action=delete", { level: 0 });
  const body = new Uint8Array([
    ...stored.subarray(0, 3),
    stored[3] | 0x10, // FLG.FCOMMENT
    ...stored.subarray(4, 10),
    ...new TextEncoder().encode("&action=view&\0"),
    ...stored.subarray(10),
  ]);
  assert.equal(new TextDecoder().decode(gunzipSync(body)), "action=delete");
  return body;
}

Deno.test("rule confusion: a form matcher does not match a body Express inflates to another form", async () => {
  // body-parser's urlencoded() inflates a `Content-Encoding: gzip` (or deflate) body by default
  // (inflate: true): the raw bytes read as a form are action=view plus two pairs with binary names.
  const body = gzipWithViewComment();
  const edge = startActionEdge(form);
  try {
    await edge.confused(
      "",
      { "content-type": "application/x-www-form-urlencoded", "content-encoding": "gzip" },
      body,
      "Express reads action=delete",
    );
  } finally {
    await edge.close();
  }
});

Deno.test("rule confusion: a multipart field name Tomcat trims is a copy of the matched name", async (t) => {
  // Tomcat's FileUploadBase.getFieldName returns params.get("name").trim() (String.trim drops
  // every char up to U+0020 at both ends), so Spring's getParameter("action") is the first of
  // delete and view. busboy, Rack and Django keep the name apart, PHP files `action ` as
  // `action_`; the edge counts only `action`.
  const edge = startActionEdge(form);
  const b = "XyZ123";
  try {
    for (const spelt of ['"action "', '"\taction"', '"action\u0001"']) {
      await t.step(`name=${spelt} before name="action"`, async () => {
        await edge.confused(
          "",
          { "content-type": `multipart/form-data; boundary=${b}` },
          `--${b}\r\nContent-Disposition: form-data; name=${spelt}\r\n\r\ndelete\r\n` +
            `--${b}\r\nContent-Disposition: form-data; name="action"\r\n\r\nview\r\n--${b}--\r\n`,
          "Spring reads action=delete",
        );
      });
    }
  } finally {
    await edge.close();
  }
});

Deno.test("rule confusion: a form matcher does not match a Content-Type that is no form to Rack, Django, Tomcat or Express", async (t) => {
  // PHP cuts the media type at a space or a comma, as bodyReadings does; Rack cuts at `;` or `,`
  // only, Django and Tomcat at `;` only, and Express's type-is refuses the header. They parse no
  // body, so Rails' params and Spring's getParameter read the query's action=delete.
  const edge = startActionEdge(form);
  try {
    for (
      const [type, readers] of [
        ["application/x-www-form-urlencoded x", "Rails and Spring read"],
        ["application/x-www-form-urlencoded, text/plain", "Spring reads"],
      ]
    ) {
      await t.step(type, async () => {
        await edge.confused(
          "?action=delete",
          { "content-type": type },
          "action=view",
          `${readers} action=delete`,
        );
      });
    }
  } finally {
    await edge.close();
  }
});

/**
 * The shipped rules.json's signup rule (a broadcast on a json matcher) over two regions. `post`
 * sends a body as a GraphQL client does and returns how many regions received it.
 */
function startSignupEdge() {
  const au = startUpstream(() => Response.json({ data: { signup: { ok: true } } }));
  // One owner: two successes would be 502 broadcast_ambiguous.
  const us = startUpstream(() => Response.json({ data: { signup: { ok: false } } }));
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [
      {
        name: "signup",
        type: "broadcast",
        match: {
          methods: ["POST"],
          path: "^/graphql$",
          body: { json: { operationName: "Signup" } },
        },
        success: { status: "2xx", json: { path: "data.signup.ok", equals: true } },
      },
      { name: "app", type: "regional" },
    ],
  });
  return {
    async post(body: string): Promise<number> {
      const before = au.received.length + us.received.length;
      const res = await fetch(`${edge.url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      await res.body?.cancel();
      assert.equal(res.status, 200);
      return au.received.length + us.received.length - before;
    },
    close: () => Promise.all([edge.close(), au.close(), us.close()]),
  };
}

Deno.test("rule confusion: a regex matcher does not match a body whose charset Django reads otherwise", async (t) => {
  // A rule that keeps delete requests away: to Django, each of these bodies says action=delete.
  const edge = startActionEdge({ regex: "^(?![\\s\\S]*delete)" });
  try {
    for (
      const [type, body] of [
        ["text/plain; charset=utf-7", "action=+AGQ-elete"],
        ["text/plain; charset=ucs-2", "action=delete"],
        ['text/plain; a"=1; charset=utf-16be', "action=delete"],
        // The byte 0x85 itself, which Python's strip() takes for white space.
        ["text/plain; charset\x85=utf-7", "action=+AGQ-elete"],
      ]
    ) {
      await t.step(JSON.stringify(type), () => edge.confused("", { "content-type": type }, body));
    }
    // The rule still matches the same body read as the app reads it.
    assert.equal(await edge.matched("", { "content-type": "text/plain" }, "action=view"), true);
  } finally {
    await edge.close();
  }
});

Deno.test("json matcher: valid JSON that json_decode and JSON.parse both read is not refused", async (t) => {
  const edge = startSignupEdge();
  try {
    // Python: requests.post(url, json={..., "variables": {"meta": json.dumps({"e": "😀"})}});
    // json.dumps escapes non-ASCII (ensure_ascii), so the inner JSON's emoji is \ud83d\ude00,
    // and the outer dumps escapes its backslashes: the body holds the text \\ud83d\\ude00.
    await t.step("a string holding JSON-encoded emoji (\\\\ud83d\\\\ude00)", async () => {
      const meta = '{"e": "\\ud83d\\ude00"}'; // the inner text Python sends: one \ each
      const body = JSON.stringify({ operationName: "Signup", variables: { meta } });
      assert.ok(body.includes("\\\\ud83d\\\\ude00"));
      assert.equal(await edge.post(body), 2, "the Signup mutation is broadcast to both regions");
    });
    await t.step("a literal backslash-u text (C:\\\\udc01)", async () => {
      const body = JSON.stringify({ operationName: "Signup", variables: { path: "C:\\udc01" } });
      assert.equal(await edge.post(body), 2, "the Signup mutation is broadcast to both regions");
    });
  } finally {
    await edge.close();
  }
});

/** The action edge with a json matcher; `matched` posts a JSON body. */
function startJsonActionEdge() {
  const edge = startActionEdge(json);
  return {
    matched: (body: string) => edge.matched("", { "content-type": "application/json" }, body),
    close: edge.close,
  };
}

Deno.test("json matcher: JSON PHP's json_decode refuses does not match (README's promise)", async (t) => {
  const edge = startJsonActionEdge();
  try {
    // php-src ext/json/json_scanner.re: an escape \uDC00 that is not the second half of a
    // UTF16_4 pair is UCS2 -> PHP_JSON_ERROR_UTF16. Here the \ before "ud800" is escaped (\\),
    // so "ud800" is plain text and \udc00 is a lone low surrogate.
    await t.step("a lone low surrogate escape after an escaped backslash", async () => {
      const body = '{"action":"view","x":"\\\\ud800\\udc00"}';
      assert.deepEqual(JSON.parse(body).x, "\\ud800\udc00");
      assert.equal(
        await edge.matched(body),
        false,
        "json_decode refuses it: Laravel reads no action",
      );
    });
    // php-src ext/json/json_parser.y: parser->depth starts at 1 and PHP_JSON_DEPTH_INC errors
    // when depth >= max_depth (512), so 511 nested arrays/objects are the most json_decode takes
    // (php.net's json_decode example: depth 3 refuses {"1":{"English":["One"]}}).
    await t.step(
      "nesting of exactly 512 (json_decode's default depth 512 allows 511)",
      async () => {
        // the outer object is level 1, then 511 arrays: 512 in all
        const body = `{"action":"view","x":${"[".repeat(511)}${"]".repeat(511)}}`;
        assert.equal(await edge.matched(body), false, "json_decode: Maximum stack depth exceeded");
      },
    );
    await t.step("control: nesting of 511 still matches", async () => {
      const body = `{"action":"view","x":${"[".repeat(510)}${"]".repeat(510)}}`;
      assert.equal(await edge.matched(body), true);
    });
  } finally {
    await edge.close();
  }
});

Deno.test("region_from: a JSON body json_decode reads names the query's region", async () => {
  const switched = () => new Response(null, { status: 302, headers: { location: "/" } });
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule({
    regions: { au: { origin: au.url }, us: { origin: us.url } },
    default_region: "us",
    rules: [{
      name: "switch",
      type: "regional",
      match: { path: "^/switch$" },
      region_from: { query: "region" },
      pin_on: { status: "3xx" },
    }],
  });
  try {
    // Valid JSON, read alike by json_decode, JSON.parse, Rails and Django; no "region" key. The
    // note holds the text \\ud83d\\ude00 (Python's json.dumps of a JSON string with an emoji).
    const body = JSON.stringify({ note: JSON.stringify({ e: "\\ud83d\\ude00" }) });
    const res = await fetch(`${edge.url}/switch?region=au`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    await res.body?.cancel();
    assert.equal(au.received.length, 1, "?region=au, and the body has no region: au");
    assert.equal(us.received.length, 0);
  } finally {
    await Promise.all([edge.close(), au.close(), us.close()]);
  }
});

Deno.test("json matcher: a lone surrogate json_decode refuses, hidden by a later duplicate key, does not match", async (t) => {
  const edge = startJsonActionEdge();
  try {
    // php-src json_scanner.re: the lone \ud800 is PHP_JSON_ERROR_UTF16 while scanning, whatever
    // key it sits under; JSON.parse keeps only the last "x", which is well formed.
    await t.step("duplicate value key", async () => {
      const body = '{"action":"view","x":"\\ud800","x":"ok"}';
      assert.equal(JSON.parse(body).x, "ok");
      assert.equal(
        await edge.matched(body),
        false,
        "json_decode refuses it: Laravel reads no action",
      );
    });
    await t.step("duplicate key whose first value holds a lone-surrogate key", async () => {
      const body = '{"action":"view","x":{"\\udc00":1},"x":2}';
      assert.equal(
        await edge.matched(body),
        false,
        "json_decode refuses it: Laravel reads no action",
      );
    });
  } finally {
    await edge.close();
  }
});

Deno.test("rule confusion: a regex matcher does not match the raw bytes of a body Express inflates to another text", async () => {
  const body = gzipWithViewComment();
  const edge = startActionEdge({ regex: "(?:^|&)action=view(?:&|$)" });
  try {
    assert.equal(await edge.matched("", { "content-type": "text/plain" }, "action=view"), true);
    await edge.confused(
      "",
      { "content-type": "text/plain", "content-encoding": "gzip" },
      body,
      "Express inflates the body to action=delete",
    );
  } finally {
    await edge.close();
  }
});

Deno.test("rule confusion: a json matcher does not match a Content-Type PHP reads as a form and Laravel as JSON", async () => {
  // `application/x-www-form-urlencoded; x=a+json`: PHP's $_POST is the form (action=delete),
  // Laravel's isJson() sees `+json`. Either reading may be the app's.
  const edge = startActionEdge({ json: { action: "view" } });
  try {
    await edge.confused(
      "",
      { "content-type": "application/x-www-form-urlencoded; x=a+json" },
      '{"action":"view","x":"&action=delete&"}',
      "PHP's $_POST reads action=delete",
    );
  } finally {
    await edge.close();
  }
});

Deno.test("false refusal: a body of exactly body_limit_bytes with a Content-Length is read, matched and forwarded byte for byte", async (t) => {
  const us = startUpstream();
  const logged: string[] = [];
  const edge = startVestibule({
    regions: { us: { origin: us.url } },
    default_region: "us",
    body_limit_bytes: 64,
    rules: [
      { name: "notes", type: "regional", match: { body: { form: { kind: "note" } } } },
      { name: "app", type: "regional" },
    ],
  }, { deps: { log: (line) => logged.push(JSON.parse(line).rule) } });
  const headers = { "content-type": "application/x-www-form-urlencoded" };
  const exact = "kind=note&x=" + "a".repeat(64 - "kind=note&x=".length);
  try {
    await t.step("64 bytes, Content-Length: 64: the notes rule, bytes intact", async () => {
      const res = await fetch(`${edge.url}/api/n`, { method: "POST", headers, body: exact });
      await res.body?.cancel();
      assert.equal(res.status, 200);
      assert.deepEqual(logged, ["notes"]);
      assert.equal(new TextDecoder().decode(us.received[0].body), exact);
      assert.equal(us.received[0].headers.get("content-length"), "64");
    });
    await t.step("65 bytes: 413 body_too_large, nothing forwarded", async () => {
      const res = await fetch(`${edge.url}/api/n`, { method: "POST", headers, body: exact + "a" });
      assert.equal(res.status, 413);
      assert.equal((await res.json()).error, "body_too_large");
      assert.equal(us.received.length, 1);
    });
  } finally {
    await Promise.all([edge.close(), us.close()]);
  }
});
