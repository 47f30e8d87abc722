import assert from "node:assert/strict";
import { startUpstream, startVestibule } from "./_servers.ts";
import { startActionEdge, VIEW_FORM } from "./_action_edge.ts";
import { parseRules } from "../lib/load_rules.ts";
import { explainRequest } from "../lib/explain.ts";

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

/** What a region switch request sends; the query names au unless it says otherwise. */
interface SwitchRequest {
  query?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: BodyInit | null;
}

/**
 * An edge with {@linkcode switchRules} in front of au and us. `contradicted` sends a switch whose
 * copies the app reads as us and checks that the edge named no region: nothing reached au, and
 * no pin was set.
 */
function startSwitchEdge() {
  const au = startUpstream(switched);
  const us = startUpstream(switched);
  const edge = startVestibule(switchRules(au.url, us.url));
  return {
    async contradicted(
      { query = "region=au", method = "POST", headers = {}, body = null }: SwitchRequest,
      why = "the app reads us",
    ) {
      const before = au.received.length;
      const res = await fetch(`${edge.url}/switch?${query}`, {
        method,
        redirect: "manual",
        headers,
        body,
      });
      await res.body?.cancel();
      assert.equal(au.received.length, before, `${why}; the edge sent it to au`);
      assert.deepEqual(res.headers.getSetCookie(), [], "and pinned the browser to au");
    },
    close: () => Promise.all([edge.close(), au.close(), us.close()]),
  };
}

/**
 * The action edge with a form matcher (tests/_action_edge.ts); `confused` posts a body of
 * Content-Type `type` the app reads as action=delete and checks the rule did not match it.
 */
function startFormEdge() {
  const edge = startActionEdge(VIEW_FORM);
  return {
    confused: (query: string, type: string, body: string, why?: string) =>
      edge.confused(query, { "content-type": type }, body, why),
    close: edge.close,
  };
}

Deno.test("forced pin: a region_from copy PHP or Rack reads where the edge read none names no region", async (t) => {
  const edge = startSwitchEdge();
  const contradicted = (
    query: string,
    headers: Record<string, string>,
    body: Uint8Array<ArrayBuffer> | null,
  ) => edge.contradicted({ query, headers, body });
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
    // PHP drops a name's leading spaces before it reads `[…]`: `$_GET['region']` is `['us']`.
    for (const query of ["region=au&%20region[]=us", "region=au&+region[]=us"]) {
      await t.step(`PHP: ${query}`, async () => {
        await contradicted(query, {}, null);
      });
    }
  } finally {
    await edge.close();
  }
});

Deno.test("forced pin: a multipart Content-Type whose last boundary= frames Rack's parts names no region", async (t) => {
  const edge = startSwitchEdge();
  // Rack's MULTIPART regex (%r|\Amultipart/.*boundary=\"?([^\";,]+)\"?|ni) is greedy: it takes
  // the LAST `boundary=` in the header, inside another parameter's name or quoted value too.
  // busboy and PHP take the boundary parameter B. The parts framed by C sit inside B's field x:
  // Rack reads region=us, the edge only x.
  const inner = '--C\r\nContent-Disposition: form-data; name="region"\r\n\r\nus\r\n--C--\r\n';
  const body = `--B\r\nContent-Disposition: form-data; name="x"\r\n\r\n${inner}\r\n--B--\r\n`;
  const contradicted = (type: string) =>
    edge.contradicted(
      { headers: { "content-type": type }, body: new TextEncoder().encode(body) },
      "Rack reads us",
    );
  try {
    await t.step("x-boundary=C after boundary=B", async () => {
      await contradicted("multipart/form-data; boundary=B; x-boundary=C");
    });
    await t.step('a quoted value "boundary=C" after boundary=B', async () => {
      await contradicted('multipart/form-data; boundary=B; a="boundary=C"');
    });
  } finally {
    await edge.close();
  }
});

Deno.test("forced pin: a body Laravel or Symfony reads by its Content-Type names no region", async (t) => {
  const edge = startSwitchEdge();
  const contradicted = (method: string, type: string, body: string) =>
    edge.contradicted({ method, headers: { "content-type": type }, body });
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
    await edge.close();
  }
});

Deno.test("rule confusion: a form field copy Rack 2 files under the matched name stops the match", async (t) => {
  const edge = startFormEdge();
  try {
    // Rack 2's normalize_params drops leading brackets: Rack::Request#POST and Rails' params
    // read `[action]=delete` as action=delete (the last copy wins). The query matcher and
    // region_from count it (valuesAsAppsRead / filedUnder); the form matcher does not.
    await t.step("action=view&[action]=delete matches action=view", async () => {
      await edge.confused(
        "",
        "application/x-www-form-urlencoded",
        "action=view&%5Baction%5D=delete",
        "Rack reads action=delete",
      );
    });
  } finally {
    await edge.close();
  }
});

Deno.test("forced pin: Content-Disposition spellings PHP or Rack 2 name differently from busboy", async (t) => {
  const edge = startSwitchEdge();
  const contradicted = (partHeaders: string) => {
    const { type, body } = onePart(partHeaders, "us");
    return edge.contradicted({ headers: { "content-type": type }, body });
  };
  try {
    // Rack 2 and 3.0 name a part by the LAST `name=` after "Content-Disposition:"
    // (2.2 and 3.0: /Content-Disposition:[^:]*;\s*name=(VALUE)/ni; 2.0: …:.*\s+name="?([^\";]*)"?),
    // inside another parameter's quoted value too. busboy and PHP read the quoted value whole:
    // the field is `note` to them, `region` to Rack.
    await t.step('Rack 2.2/3.0: name="note"; x="; name=region"', async () => {
      await contradicted('Content-Disposition: form-data; name="note"; x="; name=region"');
    });
    // The same regex is not anchored to a line start: the first "Content-Disposition:" text in
    // the part's headers, here inside another header's value, is the one Rack reads.
    await t.step("Rack 2.2/3.0: another header's value quoting a Content-Disposition", async () => {
      await contradicted(
        'X-Note: Content-Disposition: form-data; name=region; x=1\r\nContent-Disposition: form-data; name="note"',
      );
    });
    // PHP's rfc1867 takes the key before `=` verbatim and strcasecmp()s it with "filename":
    // `filename ` is no filename, so the part is the field region. Rack 2's RFC2183/BROKEN_*
    // regexes need `filename=` too: a field to Rack as well. busboy trims the key: a file, skipped.
    await t.step('PHP/Rack 2.2/3.0: filename ="a.txt" (a space before =)', async () => {
      await contradicted('Content-Disposition: form-data; name="region"; filename ="a.txt"');
    });
    // The new `filename*= without filename=` refusal looks for `; filename=` anywhere in the line,
    // inside another parameter's quoted value too. PHP splits at `;` outside quotes, so it sees
    // no filename (only `filename*`, which it does not know): a field. busboy: a file.
    await t.step('PHP: filename*= alone, a quoted "; filename=" elsewhere', async () => {
      await contradicted(
        'Content-Disposition: form-data; name="region"; x="; filename=y"; filename*=UTF-8\'\'a.txt',
      );
    });
    // PHP's php_ap_getword treats ' as a quote anywhere in a parameter, not only after `=` (the
    // new refusal looks only for `='`): `x=a'b; name="note"` is one parameter x to PHP, whose
    // name stays region. busboy reads a second name= and keeps the last: note.
    await t.step("PHP: a ' inside a token hides a later name= from PHP", async () => {
      await contradicted('Content-Disposition: form-data; name="region"; x=a\'b; name="note"');
    });
    // PHP's php_ap_getword_conf ends an unquoted value at whitespace, Rack's TOKEN too: both read
    // `region`. busboy drops the space: the field is `regionnote` to the edge.
    await t.step("PHP/Rack: an unquoted name=region note", async () => {
      await contradicted("Content-Disposition: form-data; name=region note");
    });
    // Rack's TOKEN also ends at `,`: `region`; busboy reads `region,x`.
    await t.step("Rack: an unquoted name=region, x", async () => {
      await contradicted("Content-Disposition: form-data; name=region, x");
    });
    // Rack dequotes every backslash pair (gsub(/\\(.)/, "\\1")): `re\gion` is region to
    // Rack; busboy keeps the backslash.
    await t.step('Rack: name="re\\gion"', async () => {
      await contradicted('Content-Disposition: form-data; name="re\\gion"');
    });
    // Rack's /;\s*name=(VALUE)/ needs the value right after `=`: it backtracks past the last
    // `name= "note"` to the first name, region. busboy and PHP skip the space and read note.
    await t.step('Rack: name="region"; name= "note"', async () => {
      await contradicted('Content-Disposition: form-data; name="region"; name= "note"');
    });
    // Rack's MULTIPART_CONTENT_ID (/Content-ID:\s*([^\r\n]*)/ni) is not anchored either: a part
    // with no Content-Disposition name is named by any header ENDING in "Content-ID". The new
    // refusal checks only a header named exactly Content-ID; busboy skips the part.
    await t.step("Rack: a part named by an X-Content-ID header", async () => {
      await contradicted("X-Content-ID: region");
    });
  } finally {
    await edge.close();
  }
});

Deno.test("rule confusion: a form matcher does not match a body the app reads otherwise", async (t) => {
  const edge = startFormEdge();
  const confused = (query: string, type: string, body: string) => edge.confused(query, type, body);
  try {
    // Rack 2.2/3.0 read the second part's name as `action` (the last `; name=` on the line) and
    // the later copy wins: action=delete. busboy reads the field `note`.
    await t.step('Rack: a part name="note"; x="; name=action"', async () => {
      const b = "XyZ123";
      await confused(
        "",
        `multipart/form-data; boundary=${b}`,
        `--${b}\r\nContent-Disposition: form-data; name="action"\r\n\r\nview\r\n` +
          `--${b}\r\nContent-Disposition: form-data; name="note"; x="; name=action"\r\n\r\ndelete\r\n` +
          `--${b}--\r\n`,
      );
    });
    // Laravel's isJson() (any `+json` in the Content-Type) makes input() read the body as JSON:
    // it does not parse, so input('action') is the query's. The commit says such a type "matches
    // no form matcher"; the form matcher parses it as urlencoded.
    await t.step("Laravel: application/x-www-form-urlencoded; x=a+json", async () => {
      await confused(
        "?action=delete",
        "application/x-www-form-urlencoded; x=a+json",
        "action=view",
      );
    });
    // PHP (media type cut at `;`), Rack (media_type) and Django (content_type ==) parse no body
    // of type multipart/form-datax; the form matcher's /^multipart\/form-data/i takes it as a form.
    await t.step("PHP/Rack: multipart/form-datax is no form to them", async () => {
      const b = "XyZ123";
      await confused(
        "?action=delete",
        `multipart/form-datax; boundary=${b}`,
        `--${b}\r\nContent-Disposition: form-data; name="action"\r\n\r\nview\r\n--${b}--\r\n`,
      );
    });
  } finally {
    await edge.close();
  }
});

Deno.test("crash: a multipart part without a name matches nothing and names no region: no 500", async (t) => {
  const pub = startUpstream();
  const app = startUpstream();
  const rules = {
    regions: { us: { origin: app.url } },
    upstreams: { public: { origin: pub.url } },
    default_region: "us",
    rules: [
      {
        name: "public-form",
        type: "global",
        upstream: "public",
        match: { methods: ["POST"], path: "^/form$", body: { form: { action: "view" } } },
      },
      {
        name: "switch",
        type: "regional",
        match: { path: "^/switch$" },
        region_from: { query: "region" },
      },
      { name: "app", type: "regional" },
    ],
  };
  const logs: string[] = [];
  const edge = startVestibule(rules, { deps: { log: (line) => logs.push(line) } });
  const config = parseRules(JSON.stringify(rules), { env: () => undefined });
  // busboy reports a form-data part without `name=` under the name `undefined`; every framework
  // skips such a part.
  const b = "XyZ123";
  const type = `multipart/form-data; boundary=${b}`;
  const body = `--${b}\r\nContent-Disposition: form-data; name="action"\r\n\r\nview\r\n` +
    `--${b}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--${b}--\r\n`;
  try {
    for (const path of ["/form", "/switch?region=us"]) {
      await t.step(`POST ${path}`, async () => {
        const res = await fetch(`${edge.url}${path}`, {
          method: "POST",
          headers: { "content-type": type },
          body,
        });
        await res.body?.cancel();
        assert.notEqual(res.status, 500, logs.at(-1));
        const explained = await explainRequest({
          method: "POST",
          url: `https://app.example.com${path}`,
          headers: [["Content-Type", type]],
          body,
        }, config);
        assert.ok(explained.rule);
      });
    }
  } finally {
    await Promise.all([edge.close(), pub.close(), app.close()]);
  }
});

/** A form with one field and a file, as a client writes it. */
type Upload = (field: string, value: string) => { type: string; body: Uint8Array<ArrayBuffer> };

/** Chrome: quoted names; a file name as typed, `='` included (it escapes only `"`, CR and LF). */
const chromeUpload: Upload = (field, value) => {
  const b = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
  const body = `--${b}\r\nContent-Disposition: form-data; name="${field}"\r\n\r\n${value}\r\n` +
    `--${b}\r\nContent-Disposition: form-data; name="file"; filename="x='1'.csv"\r\n` +
    `Content-Type: text/csv\r\n\r\na,b\r\n--${b}--\r\n`;
  return { type: `multipart/form-data; boundary=${b}`, body: new TextEncoder().encode(body) };
};

/**
 * .NET's MultipartFormDataContent: a value is quoted only when it is no token, and `'` is a token
 * character, so `filename=O'Brien.pdf` goes out unquoted beside `filename*`; names unquoted too.
 */
const dotnetUpload: Upload = (field, value) => {
  const b = "c9d5b5a6-3e0f-4bd6-9f5e-2a6b8f0f7c11";
  const body = `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
    `Content-Disposition: form-data; name=${field}\r\n\r\n${value}\r\n` +
    `--${b}\r\nContent-Type: application/pdf\r\n` +
    `Content-Disposition: form-data; name=file; filename=O'Brien.pdf; filename*=utf-8''O%27Brien.pdf\r\n\r\n` +
    `%PDF-1.4\r\n--${b}--\r\n`;
  return { type: `multipart/form-data; boundary="${b}"`, body: new TextEncoder().encode(body) };
};

for (
  const [client, upload] of [
    ["a browser upload of a file named x='1'.csv", chromeUpload],
    ["a .NET HttpClient upload of a file named O'Brien.pdf", dotnetUpload],
  ] as const
) {
  Deno.test(`real clients: ${client} still names the region and matches`, async (t) => {
    const au = startUpstream(switched);
    const us = startUpstream(switched);
    const pub = startUpstream();
    const edge = startVestibule({
      regions: { au: { origin: au.url }, us: { origin: us.url } },
      upstreams: { public: { origin: pub.url } },
      default_region: "us",
      rules: [
        {
          name: "switch",
          type: "regional",
          match: { path: "^/switch$" },
          region_from: { query: "region" },
          pin_on: { status: "3xx" },
        },
        {
          name: "import",
          type: "global",
          upstream: "public",
          match: { methods: ["POST"], path: "^/import$", body: { form: { action: "import" } } },
        },
        { name: "app", type: "regional" },
      ],
    });
    try {
      await t.step("region_from: every copy says au", async () => {
        const { type, body } = upload("region", "au");
        const res = await fetch(`${edge.url}/switch?region=au`, {
          method: "POST",
          redirect: "manual",
          headers: { "content-type": type },
          body,
        });
        await res.body?.cancel();
        assert.equal(au.received.length, 1, "sent to au");
        assert.equal(res.headers.getSetCookie().length, 1, "and pinned there");
      });
      await t.step("form matcher: action=import", async () => {
        const { type, body } = upload("action", "import");
        const res = await fetch(`${edge.url}/import`, {
          method: "POST",
          headers: { "content-type": type },
          body,
        });
        await res.body?.cancel();
        assert.equal(pub.received.length, 1, "matched the import rule");
      });
    } finally {
      await Promise.all([edge.close(), au.close(), us.close(), pub.close()]);
    }
  });
}

Deno.test("rule confusion: a part whose file name busboy's basename emptied is a file to every app, not a field", async (t) => {
  // busboy made `..` and `x/` an empty name, a field to the edge; PHP, Rack and Spring read a
  // file, Django skips it. An empty filename is a field to Django only, no file sent to PHP and
  // Rack: the app reads the query's action=delete.
  const edge = startFormEdge();
  try {
    for (const filename of ['".."', "..", '"x/"', '""']) {
      await t.step(`name="action"; filename=${filename}`, async () => {
        const b = "XyZ123";
        await edge.confused(
          "?action=delete",
          `multipart/form-data; boundary=${b}`,
          `--${b}\r\nContent-Disposition: form-data; name="action"; filename=${filename}\r\n` +
            `Content-Type: text/plain\r\n\r\nview\r\n--${b}--\r\n`,
          "no app reads a body field action",
        );
      });
    }
  } finally {
    await edge.close();
  }
});

Deno.test("forced pin: Content-Disposition keys in another letter case, which Rack 3.1 reads case-sensitively", async (t) => {
  await t.step('name="region"; FILENAME="a.txt" is a field to Rack 3.1', async () => {
    const edge = startSwitchEdge();
    try {
      const { type, body } = onePart(
        'Content-Disposition: form-data; name="region"; FILENAME="a.txt"',
        "us",
      );
      await edge.contradicted({ headers: { "content-type": type }, body }, "Rack 3.1 reads us");
    } finally {
      await edge.close();
    }
  });
  await t.step('NAME="action" is no action to Rack 3.1', async () => {
    const edge = startFormEdge();
    try {
      const { type, body } = onePart('Content-Disposition: form-data; NAME="action"', "view");
      await edge.confused(
        "?action=delete",
        type,
        new TextDecoder().decode(body),
        "Rack 3.1 reads action=delete",
      );
    } finally {
      await edge.close();
    }
  });
});

Deno.test("forced pin: a POST without a Content-Type, which Rack reads as a form, names no region the body contradicts", async () => {
  const edge = startSwitchEdge();
  try {
    // Rack (and Rails) parse a POST body without a Content-Type as a urlencoded form: params
    // gives region=us, where the query alone says au. (A Uint8Array body: fetch adds no type.)
    await edge.contradicted({ body: new TextEncoder().encode("region=us") }, "Rack reads us");
  } finally {
    await edge.close();
  }
});

Deno.test("forced pin: a JSON body of a type Rails reads as JSON names no region the body contradicts", async (t) => {
  const edge = startSwitchEdge();
  try {
    // Rails registers text/x-json and application/jsonrequest as JSON: params gives region=us.
    for (const type of ["text/x-json", "application/jsonrequest"]) {
      await t.step(type, () =>
        edge.contradicted(
          { headers: { "content-type": type }, body: '{"region":"us"}' },
          "Rails reads us",
        ));
    }
  } finally {
    await edge.close();
  }
});
